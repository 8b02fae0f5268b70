"""SMTP test helpers: a server on an ephemeral 127.0.0.1 port, a raw scripted client,
and read-back of stored messages."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import pytest

from postroom.accounts.passwords import hash_password
from postroom.app import inbound_checks
from postroom.checks import Check
from postroom.checks.headers import HeaderLimitCheck
from postroom.config import Config
from postroom.runtime import Runtime
from postroom.smtp.policy import SmtpMode
from postroom.smtp.receive import OutboundQueue
from postroom.smtp.session import SmtpServer
from tests.conftest import make_config

SIZE_LIMIT = 200_000
PASSWORD = "correct horse"


@pytest.fixture
def config(tmp_path: Path, server_cert: tuple[Path, Path]) -> Config:
    return make_config(tmp_path, server_cert, POSTFIX_MESSAGE_SIZE_LIMIT=SIZE_LIMIT)


@pytest.fixture(scope="session")
def password_hash() -> str:
    """Hashed once: argon2 per test would dominate the run time."""
    return hash_password(PASSWORD)


@pytest.fixture
async def accounts(runtime: Runtime, password_hash: str) -> Runtime:
    """user@ and other@example.test, an alias with two targets, a catch-all on
    catchall.test, and an alias forwarding off-site."""
    for address in ("user@example.test", "other@example.test", "boss@catchall.test"):
        await runtime.store.create_account(address, password_hash)
    await runtime.accounts.add_alias("team@example.test", "user@example.test")
    await runtime.accounts.add_alias("team@example.test", "other@example.test")
    await runtime.accounts.add_alias("@catchall.test", "boss@catchall.test")
    await runtime.accounts.add_alias("fwd@example.test", "someone@remote.example")
    return runtime


def sender_checks(runtime: Runtime) -> tuple[Check, ...]:
    """app.inbound_checks without the header-size limits: what these tests call sender
    verification (SPF, DKIM/DMARC, SPOOF_PROTECTION), through runtime.resolver."""
    return tuple(check for check in inbound_checks(runtime)
                 if not isinstance(check, HeaderLimitCheck))


@asynccontextmanager
async def serve(runtime: Runtime, mode: SmtpMode = SmtpMode.MX, *, implicit_tls: bool = False,
                outbound: OutboundQueue | None = None, verify_senders: bool = False,
                checks: Sequence[Check] = (), **options: float
                ) -> AsyncIterator[tuple[int, SmtpServer]]:
    checks = (*checks, *sender_checks(runtime)) if verify_senders else checks
    server = SmtpServer(runtime, mode, outbound, checks=checks,
                        **options)  # type: ignore[arg-type]
    context = runtime.tls.server_context if implicit_tls else None
    listener = await asyncio.start_server(server.handle_connection, "127.0.0.1", 0,
                                          ssl=context)
    try:
        yield listener.sockets[0].getsockname()[1], server
    finally:
        listener.close()
        await listener.wait_closed()


class RawClient:
    """A scripted SMTP client for what smtplib cannot say."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int, tls: ssl.SSLContext | None = None) -> RawClient:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=tls, server_hostname="127.0.0.1" if tls else None)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def reply(self) -> tuple[int, str]:
        """One (possibly multi-line) reply: (code, text of all lines)."""
        lines = []
        while True:
            line = await asyncio.wait_for(self.reader.readline(), 10)
            if not line:
                raise ConnectionError(f"closed after {lines!r}")
            assert line.endswith(b"\r\n"), line
            lines.append(line[4:-2].decode())
            if line[3:4] == b" ":
                return int(line[:3]), "\n".join(lines)

    async def command(self, line: str) -> tuple[int, str]:
        await self.send(line.encode() + b"\r\n")
        return await self.reply()

    async def is_closed(self) -> bool:
        return await asyncio.wait_for(self.reader.read(1), 10) == b""

    async def starttls(self, context: ssl.SSLContext) -> None:
        await self.writer.start_tls(context, server_hostname="127.0.0.1")

    async def close(self) -> None:
        self.writer.close()
        with suppress(ConnectionError, ssl.SSLError):
            await self.writer.wait_closed()


async def stored_messages(runtime: Runtime, address: str, mailbox: str = "INBOX"
                          ) -> list[bytes]:
    account = await runtime.store.get_account(address)
    assert account is not None
    box = await runtime.store.get_mailbox(account.id, mailbox)
    assert box is not None
    rows = await runtime.store.list_messages(box.id)
    return [await runtime.blobs.read(row.blob_id) for row in rows]


def message(subject: str = "hello", body: bytes = b"Hi there.\r\n") -> bytes:
    return (b"From: sender@remote.example\r\nTo: user@example.test\r\nSubject: "
            + subject.encode() + b"\r\n\r\n" + body)

