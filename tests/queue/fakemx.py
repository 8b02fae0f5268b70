"""A scriptable remote MX for outbound tests: aiosmtpd's SMTP protocol served on
127.0.0.1 (ephemeral port) in the test's own event loop.

Per-recipient replies come from `rcpt_replies` (address → "550 5.1.1 …"), the reply to
the end of DATA from `data_reply`; `refuse_connections` makes the next N connections get a
421 greeting and be closed (to exercise fallback to the next MX). Every accepted
transaction is recorded in `transactions`; `arrived` is set after each one.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from typing import Any, cast

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session


@dataclass
class Transaction:
    connection: int
    sender: str
    recipients: list[str]
    content: bytes
    is_tls: bool
    auth_user: str | None


@dataclass
class FakeMx:
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_reply: str = "250 2.0.0 Ok: queued"
    refuse_connections: int = 0
    tls_context: ssl.SSLContext | None = None
    credentials: tuple[str, str] | None = None  # require AUTH with these
    transactions: list[Transaction] = field(default_factory=list)
    connections: int = 0
    refused: int = 0
    port: int = 0
    auth_failures: int = 0
    smtputf8: bool = True

    def __post_init__(self) -> None:
        self.arrived = asyncio.Event()
        self._server: asyncio.Server | None = None

    async def start(self) -> FakeMx:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def __aenter__(self) -> FakeMx:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _protocol(self) -> asyncio.Protocol:
        self.connections += 1
        if self.refused < self.refuse_connections:
            self.refused += 1
            return _Refuser()
        handler = _Handler(self, self.connections)
        return SMTP(handler, hostname="mx.fake.test", tls_context=self.tls_context,
                    require_starttls=False, auth_required=self.credentials is not None,
                    auth_require_tls=True, authenticator=handler.authenticate,
                    enable_SMTPUTF8=self.smtputf8)

    async def wait_for(self, count: int) -> None:
        while len(self.transactions) < count:
            self.arrived.clear()
            await self.arrived.wait()


class _Refuser(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport on either loop (uvloop's does not subclass asyncio.Transport)
        stream = cast(asyncio.WriteTransport, transport)
        stream.write(b"421 4.3.2 mx.fake.test busy, try another\r\n")
        transport.close()


class _Handler:
    def __init__(self, mx: FakeMx, connection: int) -> None:
        self.mx = mx
        self.connection = connection

    def authenticate(self, server: SMTP, session: Session, envelope: Envelope,
                     mechanism: str, auth_data: Any) -> AuthResult:
        expected = self.mx.credentials
        ok = (expected is not None and auth_data.login.decode() == expected[0]
              and auth_data.password.decode() == expected[1])
        if not ok:
            self.mx.auth_failures += 1
        # handled=False: aiosmtpd sends the 535 itself on failure.
        return AuthResult(success=ok, handled=False,
                          auth_data=auth_data.login.decode() if ok else None)

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        reply = self.mx.rcpt_replies.get(address, "250 2.1.5 Ok")
        if reply.startswith("2"):
            envelope.rcpt_tos.append(address)
        return reply

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.mx.data_reply.startswith("2"):
            content = envelope.content
            assert isinstance(content, bytes)
            self.mx.transactions.append(Transaction(
                # aiosmtpd hands the null reverse-path over as the string "<>".
                self.connection, "" if envelope.mail_from == "<>" else str(envelope.mail_from),
                list(envelope.rcpt_tos),
                content, session.ssl is not None,
                session.auth_data if session.authenticated else None))
            self.mx.arrived.set()
        return self.mx.data_reply
