"""Fixtures for the PostgreSQL tests: a database per test, configs and env files for nodes
that share it (see pgserver.py for where the server comes from)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from postroom.config import Config
from tests.conftest import TEST_HOSTNAME, make_config
from tests.postgres.pgserver import new_database
from tests.support.server import write_env

# No DNS in these tests: the mail-authentication checks have their own suites.
NO_DNS_CHECKS = {"ENABLE_POLICYD_SPF": 0, "ENABLE_OPENDKIM": 0, "ENABLE_OPENDMARC": 0}


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
    """An env file for one node: its own DATA_DIR and ports, the shared database."""
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    return write_env(folder / "postroom.env", {
        "OVERRIDE_HOSTNAME": TEST_HOSTNAME, "DATA_DIR": folder / "data",
        "LISTEN_ADDRESS": "127.0.0.1", "SSL_TYPE": "manual",
        "SSL_CERT_PATH": server_cert[0], "SSL_KEY_PATH": server_cert[1],
        "SMTP_PORT": 0, "SUBMISSION_PORT": 0, "SUBMISSIONS_PORT": 0, "IMAP_PORT": 0,
        "IMAPS_PORT": 0, "POP3_PORT": 0, "POP3S_PORT": 0, "LOG_LEVEL": "warning",
        "STORAGE": "postgresql", "DATABASE_URL": database_url, **NO_DNS_CHECKS, **extra,
    })
