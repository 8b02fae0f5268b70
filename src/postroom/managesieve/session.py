"""The asyncio ManageSieve driver on MANAGESIEVE_PORT (4190, STARTTLS; RFC 5804).

Owns moving bytes between the socket and `ManageSieveConnection` / `ManageSieveSession`:
the greeting (the capabilities, then OK), STARTTLS (capabilities re-sent after the
handshake, §2.2), SASL continuations, the command deadline and shutdown, and mapping
errors to the wire in one place: BadSyntax → NO, Refused → NO (code), TryLater →
NO (TRYLATER), anything else → NO with the traceback logged; the connection survives.

Invariants:
- Bytes pipelined after STARTTLS are discarded, never executed (RFC 5804 §2.2).
- A deadline, not an idle timer (issue 25 §6): the whole next command must arrive within
  IMAP_IDLE_TIMEOUT of our previous answer (IMAP_LOGIN_TIMEOUT before login); bytes
  trickling in do not extend it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from functools import partial
from typing import Any, cast

from postroom.accounts.sievescripts import SieveScripts
from postroom.closing import close_connection
from postroom.errors import BadSyntax, Refused, TryLater
from postroom.loops import within
from postroom.managesieve.commands import After, Answer, ManageSieveSession
from postroom.managesieve.wire import (
    Command,
    ManageSieveConnection,
    SaslLine,
    SyntaxError_,
    render_response,
    render_string,
)
from postroom.runtime import Runtime
from postroom.security.peer import client_peername

log = logging.getLogger("postroom.managesieve")

READ_CHUNK = 64 * 1024
TLS_HANDSHAKE_TIMEOUT = 30.0


class _Hangup(Exception):
    pass


class ManageSieveServer:
    def __init__(self, runtime: Runtime, scripts: SieveScripts | None = None) -> None:
        self.runtime = runtime
        self.scripts = scripts or SieveScripts(runtime.config, runtime.store)

    async def handle_connection(self, reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter) -> None:  # fmt: skip
        link = _Link(self, reader, writer)
        try:
            await link.run()
        finally:
            await close_connection(reader, writer)


class _Link:
    def __init__(self, server: ManageSieveServer, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:  # fmt: skip
        self.runtime = server.runtime
        self.reader, self.writer = reader, writer
        peer = client_peername(writer)
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.conn = ManageSieveConnection(server.scripts.max_size)
        self.session = ManageSieveSession(self.runtime, server.scripts, peer=self.peer)
        self.deadline = 0.0
        self._restart_deadline()

    def _restart_deadline(self) -> None:
        config = self.runtime.config
        seconds = (config.imap_idle_timeout if self.session.account is not None
                   else config.imap_login_timeout)  # fmt: skip
        self.deadline = asyncio.get_running_loop().time() + seconds

    async def run(self) -> None:
        shutdown: asyncio.Future[Any] = asyncio.ensure_future(self.runtime.shutting_down.wait())
        try:
            await self._send(self.session.greeting() + render_response(
                "OK", f"{self.runtime.config.hostname} ManageSieve ready"))
            await self._serve(shutdown)
        except _Hangup:
            pass
        except (ConnectionError, ssl.SSLError, TimeoutError) as error:
            log.debug("managesieve connection from %s ended: %r", self.peer, error)
        finally:
            shutdown.cancel()

    async def _serve(self, shutdown: asyncio.Future[Any]) -> None:
        while True:
            event = self.conn.next_event()
            if event is None:
                self.conn.receive(await self._read(shutdown))
                continue
            if self.runtime.shutting_down.is_set():
                await self._send(render_response("BYE", "shutting down", "TRYLATER"))
                return
            if not isinstance(event, Command):
                await self._send(render_response("NO", getattr(event, "message", "bad syntax")))
                continue
            answer = await self._dispatch(event)
            while answer.after is After.SASL:
                self.conn.expect_sasl()
                await self._send(render_string(answer.continuation or "") + b"\r\n")
                answer = await self._sasl_answer(shutdown)
            if answer.after is After.START_TLS:
                self._prepare_tls()
            await self._send(answer.body + render_response(answer.status, answer.text,
                                                           answer.code))  # fmt: skip
            if answer.after is After.CLOSE or answer.status == "BYE":
                return
            if answer.after is After.START_TLS:
                await self._start_tls()

    async def _sasl_answer(self, shutdown: asyncio.Future[Any]) -> Answer:
        """The client's SASL response: one line (a quoted string) or a literal."""
        while True:
            event = self.conn.next_event()
            if event is None:
                self.conn.receive(await self._read(shutdown))
                continue
            if isinstance(event, SyntaxError_):
                return Answer("NO", event.message)
            response = event.text if isinstance(event, SaslLine) else ""
            return await self._call(partial(self.session.sasl_response, response))

    async def _dispatch(self, command: Command) -> Answer:
        return await self._call(partial(self.session.handle, command))

    async def _call(self, step: Any) -> Answer:
        """The one place errors become ManageSieve answers (ARCHITECTURE.md rule 4)."""
        try:
            answer: Answer = await step()
            return answer
        except BadSyntax as error:
            return Answer("NO", str(error))
        except Refused as error:
            return Answer("NO", str(error), _code(error.code))
        except TryLater as error:
            return Answer("NO", str(error), "TRYLATER")
        except Exception:
            log.exception("managesieve command from %s failed", self.peer)
            return Answer("NO", "internal server error", "TRYLATER")

    async def _read(self, shutdown: asyncio.Future[Any]) -> bytes:
        remaining = self.deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            await self._send(render_response("BYE", "autologout: idle for too long"))
            raise _Hangup
        reading: asyncio.Future[Any] = asyncio.ensure_future(self.reader.read(READ_CHUNK))
        done, _ = await asyncio.wait({reading, shutdown}, timeout=remaining,
                                     return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        if reading in done:
            data: bytes = reading.result()
            if not data:
                raise _Hangup
            return data
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reading
        text = "shutting down" if shutdown in done else "autologout: idle for too long"
        await self._send(render_response("BYE", text))
        raise _Hangup

    async def _send(self, data: bytes) -> None:
        self.writer.write(data)
        await within(self.runtime.config.imap_idle_timeout, self.writer.drain())
        self._restart_deadline()

    def _prepare_tls(self) -> None:
        cast(asyncio.Transport, self.writer.transport).pause_reading()
        dropped = self.conn.buffered + _discard_reader_buffer(self.reader)
        self.conn = ManageSieveConnection(self.conn.max_literal)
        if dropped:
            log.info("managesieve discarded %d bytes sent after STARTTLS by %s", dropped,
                     self.peer)  # fmt: skip

    async def _start_tls(self) -> None:
        await self.writer.start_tls(self.runtime.tls.server_context,
                                    ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT)  # fmt: skip
        self.session.tls_started()
        # RFC 5804 §2.2: the capabilities again, over TLS, then OK.
        await self._send(self.session.capabilities() + render_response("OK", "TLS active"))


def _code(code: str | None) -> str:
    """Our Refused codes, as RFC 5804 §1.3 names them."""
    if not code:
        return ""
    return {"BADNAME": "", "OVERQUOTA": "QUOTA"}.get(code, code)


def _discard_reader_buffer(reader: asyncio.StreamReader) -> int:
    buffer = getattr(reader, "_buffer", None)
    if not isinstance(buffer, bytearray):
        return 0
    dropped = len(buffer)
    buffer.clear()
    return dropped
