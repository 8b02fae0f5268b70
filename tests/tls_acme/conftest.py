"""Fixtures of the ACME and SNI tests: a DNS server answering 127.0.0.1 for the names
the CA validates, and pebble pointed at it and at the test's challenge ports."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme

from tests.support.dnsserver import DnsTestServer
from tests.tls_acme.pebble import Pebble, free_port

HOSTED_DOMAIN = "example.org"
ACME_NAMES = ("mail.example.test", "mta-sts.example.org", "autoconfig.example.org")


@pytest.fixture
def acme_dns() -> Iterator[DnsTestServer]:
    server = DnsTestServer()
    for name in ACME_NAMES:
        server.add(name, "A", "127.0.0.1")
    with server:
        yield server


PebbleFactory = Callable[..., Pebble]


@pytest.fixture
def start_pebble(tmp_path: Path, acme_dns: DnsTestServer) -> Iterator[PebbleFactory]:
    """Starts pebble validating on fresh ports (`.http_port`, `.tls_port`)."""
    started: list[Pebble] = []

    def start(**options: object) -> Pebble:
        folder = tmp_path / "pebble"
        folder.mkdir(exist_ok=True)
        pebble = Pebble(folder, trustme.CA(), acme_dns, http_port=free_port(),
                        tls_port=free_port(), **options)  # type: ignore[arg-type]
        started.append(pebble.start())
        return pebble

    yield start
    for pebble in started:
        pebble.stop()
