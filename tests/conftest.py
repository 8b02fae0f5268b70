"""Fixtures shared by every test layer: certificates from trustme, a Runtime over a
temporary store (SQLite, or PostgreSQL under POSTROOM_TEST_STORAGE=postgresql), and
configs whose every path and port is private to the test."""

from __future__ import annotations

import imaplib
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import trustme

from postroom.config import Config
from postroom.runtime import Runtime
from tests.support.loops import LoopFactory, chosen_loop_factory, is_uvloop_chosen
from tests.support.runtime import open_runtime
from tests.support.storage import is_postgres_chosen, release_databases, storage_settings

# Fixtures shared by several directories: `sink`, the loopback SMTP sink outbound mail goes to.
pytest_plugins = ["tests.support.smtpsink"]

TEST_HOSTNAME = "mail.example.test"


def _without_nagle(create: Callable[[imaplib.IMAP4, float | None], socket.socket]
                   ) -> Callable[[imaplib.IMAP4, float | None], socket.socket]:  # fmt: skip
    def create_socket(self: imaplib.IMAP4, timeout: float | None) -> socket.socket:
        sock = create(self, timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    return create_socket


# imaplib sends a literal and the CRLF after it in two writes; with Nagle's algorithm on
# (imaplib never sets TCP_NODELAY, mail clients do) the second waits for the server's
# delayed ACK: 40 ms per APPEND or literal SEARCH, most of some tests' time. IMAP4_SSL
# builds on this method, STARTTLS keeps the socket's options.
imaplib.IMAP4._create_socket = _without_nagle(imaplib.IMAP4._create_socket)  # type: ignore[method-assign]


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item
                                  ) -> dict[str, LoopFactory]:
    """async tests run on uvloop under POSTROOM_TEST_LOOP=uvloop (tests/support/loops.py)."""
    return {"uvloop" if is_uvloop_chosen() else "asyncio": chosen_loop_factory()}


def pytest_runtest_setup(item: pytest.Item) -> None:
    """`@pytest.mark.sqlite_only(reason=…)`: a test about SQLite or files as such, skipped
    under POSTROOM_TEST_STORAGE=postgresql (tests/support/storage.py)."""
    marker = item.get_closest_marker("sqlite_only")
    if marker is not None and is_postgres_chosen():
        pytest.skip("SQLite only: " + str(marker.kwargs.get("reason", "")))


@pytest.fixture(autouse=True)
def _release_test_databases() -> Iterator[None]:
    # Autouse, so torn down after the fixtures whose stores use the databases.
    yield
    release_databases()


@pytest.fixture(scope="session")
def trustme_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def server_cert(trustme_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory
                ) -> tuple[Path, Path]:
    """(cert chain path, key path) for the test hostname and 127.0.0.1."""
    folder = tmp_path_factory.mktemp("tls")
    cert = trustme_ca.issue_cert(TEST_HOSTNAME, "127.0.0.1", "localhost")
    cert_path, key_path = folder / "fullchain.pem", folder / "privkey.pem"
    cert.private_key_pem.write_to_path(key_path)
    with cert_path.open("wb") as handle:
        for blob in cert.cert_chain_pems:
            handle.write(blob.bytes())
    return cert_path, key_path


@pytest.fixture(scope="session")
def client_tls(trustme_ca: trustme.CA) -> ssl.SSLContext:
    """A client context that trusts the test CA (use server_hostname=TEST_HOSTNAME or
    the IP 127.0.0.1)."""
    context = ssl.create_default_context()
    trustme_ca.configure_trust(context)
    return context


def make_config(tmp_path: Path, server_cert: tuple[Path, Path], **overrides: object) -> Config:
    """A Config private to one test: its own DATA_DIR, TLS files, loopback, ephemeral ports
    (and its own database under POSTROOM_TEST_STORAGE=postgresql, unless STORAGE is given)."""
    values: dict[str, object] = {
        "OVERRIDE_HOSTNAME": TEST_HOSTNAME,
        "DATA_DIR": tmp_path / "data",
        "LISTEN_ADDRESS": "127.0.0.1",
        "SSL_TYPE": "manual",
        "SSL_CERT_PATH": server_cert[0],
        "SSL_KEY_PATH": server_cert[1],
        "SMTP_PORT": 0, "SUBMISSION_PORT": 0, "SUBMISSIONS_PORT": 0,
        "IMAP_PORT": 0, "IMAPS_PORT": 0, "POP3_PORT": 0, "POP3S_PORT": 0,
        "MTA_STS_PORT": 0,  # 0 is "no listener" here (its tests pick a free port)
    }
    values.update(overrides)
    if "STORAGE" not in overrides:
        values.update(storage_settings(values["DATA_DIR"]))
    return Config.model_validate(values)


@pytest.fixture
def config(tmp_path: Path, server_cert: tuple[Path, Path]) -> Config:
    return make_config(tmp_path, server_cert)


@pytest.fixture
async def runtime(config: Config) -> AsyncIterator[Runtime]:
    async with open_runtime(config) as opened:
        yield opened


@pytest.fixture
def anyio_backend() -> Iterator[str]:
    yield "asyncio"
