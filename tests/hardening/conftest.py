"""Hardening test helpers: a whole App on 127.0.0.1 (tests/support AppThread) with
settings per test, and a line client that reads what a server says before its greeting."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest

from postroom.accounts import service
from tests.conftest import make_config
from tests.support.server import NO_DNS_CHECKS, AppThread

PASSWORD = "correct horse battery"
USER = "user@example.test"

StartApp = Callable[..., AbstractContextManager[AppThread]]


@pytest.fixture
def start_app(tmp_path: Path, server_cert: tuple[Path, Path]) -> StartApp:
    """`with start_app(KEY=value, …) as app:` — an App with one account, USER."""

    @contextmanager
    def start(**overrides: object) -> Iterator[AppThread]:
        # Inbound SPF/DKIM/DMARC would ask real DNS about the test senders: off here.
        values: dict[str, object] = {"AUTH_FAILURE_DELAY": 0, **NO_DNS_CHECKS, **overrides}
        with AppThread(make_config(tmp_path, server_cert, **values)) as app:
            app.add_account(USER, PASSWORD)
            yield app

    return start


def connect(port: int, tls: ssl.SSLContext | None = None, timeout: float = 10) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if tls is not None:
        return tls.wrap_socket(sock, server_hostname="127.0.0.1")
    return sock


def read_line(sock: socket.socket) -> bytes:
    """One CRLF-terminated line (byte by byte: nothing after it is consumed)."""
    line = b""
    while not line.endswith(b"\r\n"):
        byte = sock.recv(1)
        if not byte:
            break
        line += byte
    return line


def is_closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


@pytest.fixture
def hash_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every full password verification AccountService makes (the CPU an attacker
    would make us spend; what the verified-login cache saves)."""
    calls: list[str] = []
    real = service.verify_password

    def counting(password: str, password_hash: str) -> bool:
        calls.append(password)
        return real(password, password_hash)

    monkeypatch.setattr(service, "verify_password", counting)
    return calls
