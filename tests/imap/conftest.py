"""Fixtures for IMAP socket tests: a real ImapServer on 127.0.0.1 in a background thread.

`ImapThread` runs its own event loop with a Runtime over a temporary store (SQLite, or
PostgreSQL under POSTROOM_TEST_STORAGE=postgresql: tests/support/runtime.py) and two
listeners: `port` (plain, STARTTLS) and `tls_port` (implicit TLS). Blocking clients
(imaplib, imap_tools, raw sockets, mbsync) talk to it; `call()` runs store coroutines
on its loop, e.g. to deliver a message as SMTP would.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import socket
import ssl
import threading
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import pytest

from postroom.config import Config
from postroom.imap.session import ImapServer
from postroom.mail.mimetree import message_meta
from postroom.runtime import Runtime
from postroom.store.api import MessageRow, NewMessage
from tests.conftest import TEST_HOSTNAME, make_config
from tests.support.loops import chosen_loop_factory
from tests.support.runtime import open_runtime

T = TypeVar("T")
USER = "alice@example.test"
PASSWORD = "correct horse battery"


class ImapThread:
    def __init__(self, config: Config, **server_options: float) -> None:
        self.config = config
        self.server_options = server_options
        self.loop = chosen_loop_factory()()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runtime: Runtime | None = None
        self._servers: list[asyncio.Server] = []
        self.port = 0
        self.tls_port = 0
        self._exit_stack = contextlib.AsyncExitStack()

    def __enter__(self) -> ImapThread:
        self._thread.start()
        self.call(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        self.call(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout)

    @property
    def rt(self) -> Runtime:
        assert self.runtime is not None
        return self.runtime

    async def _open_runtime(self) -> Runtime:
        return await self._exit_stack.enter_async_context(open_runtime(self.config))

    async def _start(self) -> None:
        self.runtime = await self._open_runtime()
        plain = ImapServer(self.runtime, False, **self.server_options)
        implicit = ImapServer(self.runtime, True, **self.server_options)
        server = await asyncio.start_server(plain.handle_connection, "127.0.0.1", 0)
        tls_server = await asyncio.start_server(
            implicit.handle_connection, "127.0.0.1", 0,
            ssl=self.runtime.tls.listener_context())
        self._servers = [server, tls_server]
        self.port = server.sockets[0].getsockname()[1]
        self.tls_port = tls_server.sockets[0].getsockname()[1]
        await self.runtime.accounts.add_account(USER, PASSWORD)

    async def _stop(self) -> None:
        assert self.runtime is not None
        self.runtime.shutting_down.set()
        for server in self._servers:
            server.close()
        await self._exit_stack.aclose()

    # -- helpers for tests ------------------------------------------------------------------
    def deliver(self, raw: bytes, *, mailbox: str = "INBOX", address: str = USER,
                flags: frozenset[str] = frozenset()) -> MessageRow:
        """Store a message the way SMTP delivery does (blob, meta, row, feed event)."""

        async def run() -> MessageRow:
            store = self.rt.store
            account = await store.get_account(address)
            assert account is not None
            box = await store.get_mailbox(account.id, mailbox)
            assert box is not None
            blob_id = await self.rt.blobs.put(raw)
            return await store.append_message(box.id, NewMessage(
                blob_id, len(raw), dt.datetime.now(dt.UTC), flags, message_meta(raw)))

        return self.call(run())

    def messages(self, mailbox: str = "INBOX", address: str = USER) -> list[MessageRow]:
        async def run() -> list[MessageRow]:
            store = self.rt.store
            account = await store.get_account(address)
            assert account is not None
            box = await store.get_mailbox(account.id, mailbox)
            assert box is not None
            return await store.list_messages(box.id)

        return self.call(run())


@pytest.fixture
def imap_server(tmp_path: Path, server_cert: tuple[Path, Path]) -> Iterator[ImapThread]:
    with ImapThread(make_config(tmp_path, server_cert)) as server:
        yield server


def simple_message(subject: str = "hello", body: str = "Hello world\r\n",
                   sender: str = "carol@example.org") -> bytes:
    return (f"From: Carol <{sender}>\r\nTo: {USER}\r\nSubject: {subject}\r\n"
            f"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\nMessage-ID: <{subject}@x>\r\n\r\n"
            f"{body}").encode()


class RawClient:
    """A scripted line client over a real socket (what imaplib cannot say)."""

    def __init__(self, port: int, *, tls: ssl.SSLContext | None = None) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock: socket.socket = (
            tls.wrap_socket(sock, server_hostname=TEST_HOSTNAME) if tls else sock)
        self.buffer = b""
        self.greeting = self.line()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed; buffered {self.buffer!r}")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def read_exact(self, size: int) -> bytes:
        while len(self.buffer) < size:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buffer += chunk
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def until_tagged(self, tag: bytes) -> list[bytes]:
        """Lines (literals inlined) up to and including the tagged response."""
        lines = []
        while True:
            line = self.line()
            while line.endswith(b"}") and b"{" in line:
                size = int(line[line.rindex(b"{") + 1 : -1].lstrip(b"~").rstrip(b"+"))
                line += b"\r\n" + self.read_exact(size) + self.line()
            lines.append(line)
            if line.startswith(tag + b" "):
                return lines

    def command(self, tag: bytes, text: bytes) -> list[bytes]:
        self.send(tag + b" " + text + b"\r\n")
        return self.until_tagged(tag)

    def close(self) -> None:
        self.sock.close()


def login_raw(server: ImapThread, client_tls: ssl.SSLContext, user: str = USER) -> RawClient:
    client = RawClient(server.tls_port, tls=client_tls)
    assert client.command(b"L", f'LOGIN "{user}" "{PASSWORD}"'.encode())[-1].startswith(b"L OK")
    return client
