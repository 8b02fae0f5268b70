"""The asyncio driver for POP3 on 110 (STLS) and 995 (implicit TLS).

Owns the byte moving for one connection: reading into `Pop3Connection`, writing rendered
responses (RETR streamed from disk through `DotStuffer`), the STLS upgrade, the command
deadline (POP3_TIMEOUT; RFC 1939 §3: at least 10 minutes) and shutdown. Meaning lives in
`pop3/commands.py`; syntax in `pop3/wire.py`.

Invariants:
- Bytes pipelined after STLS are discarded before the handshake, never executed
  (RFC 2595 §4, ARCHITECTURE.md rule 9).
- Errors map to the wire in one place (`_dispatch`); a client never sees a traceback, and
  its connection survives everything but a fatal framing error or a failure mid-response.
- However a connection ends, the maildrop lock is released and — unless the client sent
  QUIT in the TRANSACTION state — no deletion is applied.
- A deadline, not an idle timer (issue 25 §6): the whole next command line (or SASL
  response) must arrive within POP3_TIMEOUT of our previous response; bytes trickling in
  do not extend it. On expiry: `-ERR` and close, without entering the UPDATE state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from typing import cast

from postroom.closing import close_connection
from postroom.errors import BadSyntax, Refused, TryLater
from postroom.loops import within
from postroom.pop3 import wire
from postroom.pop3.commands import (
    LOCKS,
    After,
    MaildropLocks,
    Outcome,
    Pop3Session,
    StreamedMessage,
)
from postroom.runtime import Runtime
from postroom.security.peer import client_peername
from postroom.wakers import Waker, Wakers

log = logging.getLogger(__name__)

READ_CHUNK = 64 * 1024
TLS_HANDSHAKE_TIMEOUT = 30.0


class _Hangup(Exception):
    """Internal: end the connection now (EOF, timeout, shutdown)."""


def _discard_reader_buffer(reader: asyncio.StreamReader) -> int:
    """Drop plaintext the StreamReader has buffered but we have not read.

    asyncio has no public call for this, and `StreamWriter.start_tls` keeps that buffer,
    so pipelined plaintext would be read as if it came over TLS (the STARTTLS command
    injection class of bugs). aiosmtpd reaches into the same attribute.
    """
    buffer = getattr(reader, "_buffer", None)
    if not isinstance(buffer, bytearray):
        return 0
    dropped = len(buffer)
    buffer.clear()
    return dropped


class Pop3Server:
    """One listener's connection handler; `implicit_tls` for 995."""

    def __init__(self, runtime: Runtime, implicit_tls: bool, *,
                 idle_timeout: float | None = None, locks: MaildropLocks = LOCKS) -> None:
        self.runtime = runtime
        self.implicit_tls = implicit_tls
        # POP3_TIMEOUT (RFC 1939 §3: at least 10 minutes); the parameter is for tests.
        self.idle_timeout = float(runtime.config.pop3_timeout if idle_timeout is None
                                  else idle_timeout)
        self.locks = locks
        self.wakers = Wakers(runtime.shutting_down)  # shutdown ends waits (wakers.py)

    async def handle_connection(self, reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter) -> None:
        link = _Pop3Link(self, reader, writer)
        self.wakers.add(link.waker)
        try:
            await link.run()
        finally:
            self.wakers.discard(link.waker)
            link.session.close()
            await close_connection(reader, writer)


class _Pop3Link:
    """The state of one connection's driver."""

    def __init__(self, server: Pop3Server, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.runtime = server.runtime
        self.reader = reader
        self.writer = writer
        peer = client_peername(writer)  # behind a PROXY-protocol balancer: the real client
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.conn = wire.Pop3Connection()
        self.waker = Waker()
        self.session = Pop3Session(self.runtime, self.conn, is_tls=server.implicit_tls,
                                   peer=self.peer, locks=server.locks)
        # loop.time() by which the next whole command line must have arrived; every
        # response we finish sending sets it again.
        self.deadline = asyncio.get_running_loop().time() + server.idle_timeout

    async def run(self) -> None:
        try:
            await self._send(wire.render_ok(f"{self.runtime.config.hostname} postroom POP3 "
                                            "server ready"))
            await self._serve()
        except _Hangup:
            pass
        except (ConnectionError, ssl.SSLError, TimeoutError, asyncio.IncompleteReadError) as error:
            log.debug("pop3 connection from %s ended: %r", self.peer, error)
        except Exception:
            # Mid-response (a RETR stream failing): nothing sensible can follow on the wire.
            log.exception("pop3 connection from %s failed", self.peer)

    async def _serve(self) -> None:
        while True:
            event = self.conn.next_event()
            if isinstance(event, wire.NeedData):
                self.conn.receive_data(await self._read())
                continue
            if self.runtime.shutting_down.is_set():
                # Deletions are applied only by QUIT (RFC 1939 §6): not now, then.
                await self._send(wire.render_err("shutting down", "SYS/TEMP"))
                return
            if isinstance(event, wire.Malformed):
                await self._send(wire.render_err(event.reason))
                if event.is_fatal:
                    return
                continue
            outcome = await self._dispatch(event)
            if outcome.after is After.START_TLS:
                self._prepare_tls()
            await self._write_outcome(outcome)
            if outcome.after is After.CLOSE:
                return
            if outcome.after is After.START_TLS:
                await self._start_tls()

    async def _read(self) -> bytes:
        """The next bytes, before the deadline (which they do not move) and shutdown."""
        remaining = self.deadline - asyncio.get_running_loop().time()
        data: bytes | None = None
        if remaining > 0 and not self.runtime.shutting_down.is_set():
            with contextlib.suppress(TimeoutError):
                data = await self.waker.read(self.reader, READ_CHUNK, remaining)
            if data:
                return data
            if data == b"":
                raise _Hangup  # EOF: the client went away without QUIT
        if self.runtime.shutting_down.is_set():
            await self._send(wire.render_err("shutting down", "SYS/TEMP"))
        else:
            # RFC 1939 §3 autologout: close without entering the UPDATE state.
            await self._send(wire.render_err("autologout: idle for too long"))
        raise _Hangup

    async def _dispatch(self, event: wire.Command | wire.SaslResponse) -> Outcome:
        """The one place errors become POP3 responses (ARCHITECTURE.md rule 4)."""
        try:
            return await self.session.handle(event)
        except BadSyntax as error:
            return Outcome(wire.Err(str(error)))
        except Refused as error:
            return Outcome(wire.Err(str(error), error.code))
        except TryLater as error:
            return Outcome(wire.Err(str(error), "SYS/TEMP"))
        except Exception:
            log.exception("pop3 command %r from %s failed", type(event).__name__, self.peer)
            return Outcome(wire.Err("internal server error", "SYS/TEMP"))

    async def _write_outcome(self, outcome: Outcome) -> None:
        if isinstance(outcome.response, StreamedMessage):
            await self._stream(outcome.response)
        else:
            await self._send(wire.render(outcome.response))

    async def _stream(self, message: StreamedMessage) -> None:
        stuffer = wire.DotStuffer()
        self.writer.write(wire.render_ok(message.text))
        try:
            async for chunk in message.chunks:
                self.writer.write(stuffer.feed(chunk))
                await self._drain()
        finally:
            aclose = getattr(message.chunks, "aclose", None)
            if aclose is not None:
                await aclose()
        await self._send(stuffer.finish())

    async def _send(self, data: bytes) -> None:
        """Write a whole response (or its end): the client's next command is due within
        POP3_TIMEOUT of it."""
        self.writer.write(data)
        await self._drain()
        self.deadline = asyncio.get_running_loop().time() + self.server.idle_timeout

    async def _drain(self) -> None:
        # A client that stops reading must not pin the connection forever.
        await within(self.server.idle_timeout, self.writer.drain())

    def _prepare_tls(self) -> None:
        """Before the +OK to STLS: stop reading, drop what the client pipelined.

        Whatever arrived so far was sent before the client could see our +OK: plaintext
        to discard (RFC 2595 §4). Reading stays paused until the TLS layer takes over the
        transport, so the ClientHello that follows our +OK stays in the socket for it
        rather than landing in the plaintext StreamReader buffer.
        """
        cast(asyncio.Transport, self.writer.transport).pause_reading()
        dropped = self.conn.discard_buffer() + _discard_reader_buffer(self.reader)
        if dropped:
            log.info("pop3 discarded %d bytes sent after STLS by %s", dropped, self.peer)

    async def _start_tls(self) -> None:
        # loop.start_tls resumes reading once the TLS protocol is in place.
        await self.writer.start_tls(self.runtime.tls.server_context,
                                    ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT)
        self.session.tls_started()
        # The handshake's end is the answer the next command follows.
        self.deadline = asyncio.get_running_loop().time() + self.server.idle_timeout
