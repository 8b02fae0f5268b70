"""Test support for POP3 socket tests: both listeners on 127.0.0.1 over one Runtime,
connection tracking (so a test can wait until the server has finished a session instead
of sleeping), mail put straight into an INBOX, and a raw line client for what poplib
cannot say (pipelining, bytes injected after STLS, garbage)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ssl
from collections.abc import Awaitable, Callable

from postroom.pop3.commands import MaildropLocks
from postroom.pop3.session import Pop3Server
from postroom.runtime import Runtime
from postroom.store.api import MessageRow, NewMessage

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Pop3Harness:
    def __init__(self, runtime: Runtime, idle_timeout: float = 600.0) -> None:
        self.runtime = runtime
        self.locks = MaildropLocks()
        self.idle_timeout = idle_timeout
        self.plain_port = 0
        self.tls_port = 0
        self._servers: list[asyncio.Server] = []
        self._sessions: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Condition()

    async def start(self) -> Pop3Harness:
        for implicit_tls in (False, True):
            server = Pop3Server(self.runtime, implicit_tls, idle_timeout=self.idle_timeout,
                                locks=self.locks)
            context = self.runtime.tls.server_context if implicit_tls else None
            listener = await asyncio.start_server(self._tracked(server.handle_connection),
                                                  "127.0.0.1", 0, ssl=context)
            self._servers.append(listener)
            port = listener.sockets[0].getsockname()[1]
            if implicit_tls:
                self.tls_port = port
            else:
                self.plain_port = port
        return self

    def _tracked(self, handler: Handler) -> Handler:
        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._sessions.add(task)  # type: ignore[arg-type]
            try:
                await handler(reader, writer)
            finally:
                self._sessions.discard(task)  # type: ignore[arg-type]
                async with self._changed:
                    self._changed.notify_all()

        return run

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    async def wait_sessions(self, count: int = 0, timeout: float = 10) -> None:
        """Until exactly `count` server-side sessions are running."""
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: len(self._sessions) == count), timeout)

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        await self.wait_sessions(0)


async def add_account(runtime: Runtime, address: str, password: str) -> int:
    account = await runtime.accounts.add_account(address, password)
    return account.id


async def deliver(runtime: Runtime, address: str, raw: bytes) -> MessageRow:
    account = await runtime.store.get_account(address)
    assert account is not None
    inbox = await runtime.store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    blob_id = await runtime.blobs.put(raw)
    return await runtime.store.append_message(
        inbox.id, NewMessage(blob_id=blob_id, size=len(raw),
                             internal_date=dt.datetime.now(dt.UTC)))


class RawClient:
    """A line-oriented POP3 client over asyncio streams."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int, context: ssl.SSLContext | None = None) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
        client = cls(reader, writer)
        greeting = await client.line()
        assert greeting.startswith(b"+OK "), greeting
        return client

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def line(self) -> bytes:
        return await asyncio.wait_for(self.reader.readline(), 10)

    async def multiline(self) -> tuple[bytes, list[bytes]]:
        """The status line and the dot-unstuffed lines (without CRLF)."""
        status = await self.line()
        assert status.startswith(b"+OK"), status
        lines = []
        while (line := await self.line()) != b".\r\n":
            assert line.endswith(b"\r\n"), line
            lines.append(line[1:-2] if line.startswith(b".") else line[:-2])
        return status, lines

    async def command(self, text: str) -> bytes:
        await self.send(text.encode() + b"\r\n")
        return await self.line()

    async def start_tls(self, context: ssl.SSLContext) -> None:
        await self.writer.start_tls(context, server_hostname="127.0.0.1")

    async def is_closed_by_server(self) -> bool:
        return await asyncio.wait_for(self.reader.read(), 10) == b""

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await self.writer.wait_closed()
