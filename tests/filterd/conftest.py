"""Fixtures of the filter-daemon tests: rspamd (with Redis for its Bayes) once per module,
clamd per test where a test stops it, and the settings of a server that talks to them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from postroom.config import Config
from tests.conftest import make_config
from tests.filterd.daemons import Daemon, start_clamd, start_redis, start_rspamd
from tests.support.server import NO_DNS_CHECKS

# Nothing but the filter under test: no DNS-based checks, no greylisting.
QUIET = {**NO_DNS_CHECKS, "ENABLE_DNSBL": 0, "ENABLE_POSTGREY": 0}


@dataclass(frozen=True, slots=True)
class Rspamd:
    daemon: Daemon
    url: str  # the normal worker: /checkv2
    controller_url: str  # the controller: /learnspam, /learnham


@pytest.fixture(scope="module")
def rspamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rspamd]:
    folder = tmp_path_factory.mktemp("rspamd")
    redis, redis_port = start_redis(folder / "redis")
    daemon, normal, controller = start_rspamd(folder / "rspamd", redis_port)
    try:
        yield Rspamd(daemon, f"http://127.0.0.1:{normal}", f"http://127.0.0.1:{controller}")
    finally:
        daemon.stop()
        redis.stop()


@pytest.fixture
def clamd(tmp_path: Path) -> Iterator[tuple[Daemon, Path]]:
    daemon, sock = start_clamd(tmp_path / "clamd")
    try:
        yield daemon, sock
    finally:
        daemon.stop()


def filter_config(tmp_path: Path, server_cert: tuple[Path, Path], **overrides: object
                  ) -> Config:
    return make_config(tmp_path, server_cert, **{**QUIET, **overrides})
