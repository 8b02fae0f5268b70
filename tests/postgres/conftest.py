"""Fixtures for the PostgreSQL tests: a database per test, configs and env files for nodes
that share it (see pgserver.py for where the server comes from)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from postroom.config import Config
from tests.conftest import make_config
from tests.postgres.pgserver import new_database
from tests.support.server import NO_DNS_CHECKS, local_serve_env, write_env


@pytest.fixture
def database_url() -> Iterator[str]:
    with new_database() as url:
        yield url


@pytest.fixture
def pg_config(tmp_path: Path, server_cert: tuple[Path, Path], database_url: str) -> Config:
    return make_config(tmp_path, server_cert, STORAGE="postgresql", DATABASE_URL=database_url,
                       **NO_DNS_CHECKS)


def node_env(tmp_path: Path, server_cert: tuple[Path, Path], database_url: str, name: str,
             **extra: object) -> Path:
    """An env file for one node: its own DATA_DIR and ports, the shared database; no DNS
    (the mail-authentication checks have their own suites)."""
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    return write_env(folder / "postroom.env", local_serve_env(
        folder / "data", server_cert, LOG_LEVEL="warning", STORAGE="postgresql",
        DATABASE_URL=database_url, **NO_DNS_CHECKS, **extra))
