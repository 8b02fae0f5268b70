"""The asyncio IMAP driver: one task per connection on 143 (STARTTLS) and 993 (TLS).

Owns moving bytes between the socket and the sans-IO `ImapConnection`, timeouts,
STARTTLS, IDLE, shutdown, and mapping errors to the wire in one place (ARCHITECTURE.md
rule 4): BadSyntax → BAD, Refused → NO [code], TryLater → NO [UNAVAILABLE], anything
else → NO [SERVERBUG] with the traceback logged; the connection survives.

Invariants:
- Every read has a timeout: 60 s before login, the 30-minute autologout after
  (RFC 9051 §5.4); IDLE is re-armed at the same autologout limit.
- Bytes pipelined after STARTTLS are discarded, never executed (RFC 9051 §6.2.1).
- Mailbox updates go out after each command and during IDLE; EXPUNGE never while
  answering FETCH, STORE or SEARCH (RFC 9051 §7.5.1). IDLE learns of changes from the
  change feed, so new mail reaches an idling client within a second.
- When `runtime.shutting_down` is set, an idle or waiting session says BYE and closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from postroom.closing import close_connection
from postroom.errors import BadSyntax, Refused, TryLater
from postroom.imap.commands import HANDLERS, NO_EXPUNGE_DURING, Context, Done
from postroom.imap.selected import MailboxGone
from postroom.imap.wire import commands as c
from postroom.imap.wire.connection import (
    DEFAULT_MAX_LITERAL_SIZE,
    ConnectionState,
    ImapConnection,
    LineTooLong,
    LiteralTooBig,
    NeedContinuation,
    NeedData,
    RawLine,
    SyntaxErrorEvent,
    is_allowed,
)
from postroom.imap.wire.responses import (
    Atom,
    render_continuation,
    render_tagged,
    render_untagged_status,
)
from postroom.runtime import Runtime

log = logging.getLogger("postroom.imap")

READ_SIZE = 65536
DRAIN_ABOVE = 256 * 1024  # flush the socket buffer once this much output is queued
# A peer sending this many BAD commands in a row is not an IMAP client (or is lost):
# say BYE rather than answer garbage forever (Dovecot does the same after 10).
MAX_BAD_IN_A_ROW = 20


class _Closed(Exception):
    """The peer went away, a timeout fired, or the server is shutting down."""


class ImapServer:
    """Accepts IMAP connections; `handle_connection` is the asyncio.start_server callback."""

    def __init__(
        self,
        runtime: Runtime,
        implicit_tls: bool,
        *,
        preauth_timeout: float = 60.0,
        idle_timeout: float = 1800.0,
    ) -> None:
        self.runtime = runtime
        self.implicit_tls = implicit_tls
        self.preauth_timeout = preauth_timeout
        self.idle_timeout = idle_timeout

    async def handle_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        session = _Session(self, reader, writer)
        try:
            await session.run()
        except (_Closed, OSError, asyncio.IncompleteReadError):
            pass  # the peer went away (OSError covers resets and TLS failures)
        finally:
            session.close()
            await close_connection(reader, writer)


class _Session:
    def __init__(
        self, server: ImapServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.server = server
        self.runtime = server.runtime
        self.reader = reader
        self.writer = writer
        # The literal limit is APPENDLIMIT (RFC 7889): a bigger APPEND is refused with
        # NO [TOOBIG] before its literal is read; no other command needs more.
        limit = self.runtime.config.message_size_limit or DEFAULT_MAX_LITERAL_SIZE
        self.conn = ImapConnection(max_literal_size=limit)
        self.ctx = Context(self.runtime, self.conn, self, is_tls=server.implicit_tls,
                           is_implicit_tls=server.implicit_tls)  # fmt: skip
        self._shutdown = asyncio.ensure_future(self.runtime.shutting_down.wait())
        self._bad_in_a_row = 0

    def close(self) -> None:
        self._shutdown.cancel()
        if self.ctx.subscription is not None:
            self.ctx.subscription.close()

    # -- SessionIO ----------------------------------------------------------------------
    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        transport = self.writer.transport
        if transport.get_write_buffer_size() > DRAIN_ABOVE:
            await self.writer.drain()

    async def read_line(self) -> bytes:
        """One raw line (an AUTHENTICATE response)."""
        self.conn.expect_line()
        while True:
            event = self.conn.next_event()
            if isinstance(event, RawLine):
                return event.line
            if isinstance(event, LineTooLong):
                raise BadSyntax("line too long")
            if event is not NeedData:
                raise BadSyntax("unexpected input")
            await self._receive()

    # -- reading ----------------------------------------------------------------------------
    def _timeout(self) -> float:
        if self.ctx.state is ConnectionState.NOT_AUTHENTICATED:
            return self.server.preauth_timeout
        return self.server.idle_timeout

    async def _receive(self) -> None:
        """Read one chunk into the connection, or raise _Closed (after saying BYE)."""
        read = asyncio.ensure_future(self.reader.read(READ_SIZE))
        done, _ = await asyncio.wait({read, self._shutdown}, timeout=self._timeout(),
                                     return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        if read in done:
            data = read.result()
            if not data:
                raise _Closed
            self.conn.receive_data(data)
            return
        read.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await read
        await self._bye_and_close()

    async def _bye_and_close(self) -> None:
        if self.runtime.shutting_down.is_set():
            text = "postroom shutting down"
        else:
            text = "autologout: idle for too long"  # RFC 9051 §5.4
        await self._send_bye(text)
        raise _Closed

    async def _send_bye(self, text: str) -> None:
        with contextlib.suppress(ConnectionError):
            self.writer.write(render_untagged_status("BYE", text))
            await self.writer.drain()

    # -- main loop ----------------------------------------------------------------------------
    async def run(self) -> None:
        if self.runtime.shutting_down.is_set():
            await self._send_bye("postroom shutting down")
            return
        caps = [Atom(cap) for cap in self.ctx.capabilities()]
        await self.write(render_untagged_status("OK", "postroom ready", "CAPABILITY", caps))
        await self.writer.drain()
        while self.ctx.state is not ConnectionState.LOGOUT:
            event = self.conn.next_event()
            if event is NeedData:
                await self.writer.drain()
                await self._receive()
            elif isinstance(event, NeedContinuation):
                await self.write(self.conn.send_continuation())
                await self.writer.drain()
            elif isinstance(event, c.Command):
                await self._run_command(event)
            else:
                await self._protocol_error(event)

    async def _protocol_error(self, event: object) -> None:
        if isinstance(event, SyntaxErrorEvent):
            await self._tagged(event.tag, Done(event.message, status="BAD"))
        elif isinstance(event, LiteralTooBig):
            # RFC 7888 §4 / RFC 9051 §7.1: TOOBIG; APPEND gets NO, anything else BAD.
            status = "NO" if event.command == "APPEND" else "BAD"
            await self._tagged(event.tag, Done("literal too big", "TOOBIG", status=status))
        elif isinstance(event, LineTooLong):
            await self._tagged(event.tag, Done("command line too long", status="BAD"))
        elif isinstance(event, RawLine):
            await self._tagged(None, Done("unexpected line", status="BAD"))

    async def _tagged(self, tag: str | None, done: Done) -> None:
        self._bad_in_a_row = self._bad_in_a_row + 1 if done.status == "BAD" else 0
        if self._bad_in_a_row > MAX_BAD_IN_A_ROW:
            await self._send_bye("too many invalid commands")
            raise _Closed
        if tag is None:
            data = render_untagged_status(done.status, done.text, done.code, done.code_args)
        else:
            data = render_tagged(tag, done.status, done.text, done.code, done.code_args)
        await self.write(data)

    async def _run_command(self, command: c.Command) -> None:
        ctx = self.ctx
        if not is_allowed(command, ctx.state):
            text = f"{type(command).__name__.upper()} not allowed now ({ctx.state.value})"
            await self._tagged(command.tag, Done(text, status="BAD"))
            return
        if isinstance(command, c.StartTls):
            await self._starttls(command)
            return
        if isinstance(command, c.Idle):
            await self._idle(command)
            return
        done = await self._call(command)
        await self._send_updates(may_expunge=not isinstance(command, NO_EXPUNGE_DURING))
        await self._tagged(command.tag, done)

    async def _call(self, command: c.Command) -> Done:
        ctx = self.ctx
        try:
            ctx.note_changes()
            if ctx.selected is not None and ctx.is_selected_stale:
                # Fresh flags before acting; the updates themselves go out afterwards.
                await ctx.selected.refresh(self.runtime.store)
                ctx.is_selected_stale = False
            return await HANDLERS[type(command)](ctx, command)
        except MailboxGone:
            await self._send_bye("the selected mailbox was deleted")
            raise _Closed from None
        except BadSyntax as error:
            return Done(str(error), status="BAD")
        except Refused as error:
            return Done(str(error), error.code, status="NO")
        except TryLater as error:
            return Done(str(error) or "try again later", "UNAVAILABLE", status="NO")
        except (ConnectionError, _Closed):
            raise  # the peer is gone: nothing to answer
        except Exception:
            log.exception("imap: %s failed", type(command).__name__.upper())
            return Done("internal server error", "SERVERBUG", status="NO")

    # -- STARTTLS ----------------------------------------------------------------------------
    async def _starttls(self, command: c.StartTls) -> None:
        if self.ctx.is_tls:
            await self._tagged(command.tag, Done("TLS is already active", status="BAD"))
            return
        await self._tagged(command.tag, Done("begin TLS negotiation now"))
        await self.writer.drain()
        # RFC 9051 §6.2.1: whatever the client pipelined after STARTTLS is not executed,
        # neither what we already hold nor what the stream reader buffered meanwhile.
        self.conn.discard_buffered()
        _discard_reader_buffer(self.reader)
        try:
            await self.writer.start_tls(self.runtime.tls.server_context,
                                        ssl_handshake_timeout=30)  # fmt: skip
        except (OSError, TimeoutError) as error:
            log.info("imap: STARTTLS handshake failed: %s", error)
            raise _Closed from error
        self.ctx.is_tls = True

    # -- IDLE --------------------------------------------------------------------------------
    async def _idle(self, command: c.Idle) -> None:
        """RFC 2177 / RFC 9051 §6.3.13: updates as they happen until the client says DONE."""
        await self._send_updates(may_expunge=True)
        await self.write(render_continuation("idling"))
        await self.writer.drain()
        self.conn.expect_line()
        while True:
            event = self.conn.next_event()
            if isinstance(event, RawLine):
                if event.line.strip().upper() == b"DONE":
                    break
                await self._tagged(command.tag, Done("expected DONE", status="BAD"))
                return
            if isinstance(event, LineTooLong):
                await self._tagged(command.tag, Done("expected DONE", status="BAD"))
                return
            await self._idle_wait()
        await self._send_updates(may_expunge=True)
        await self._tagged(command.tag, Done("IDLE terminated"))

    async def _idle_wait(self) -> None:
        """Wait for input, a change to report, shutdown or the autologout timer."""
        subscription = self.ctx.subscription
        read = asyncio.ensure_future(self.reader.read(READ_SIZE))
        waiters: set[asyncio.Future[object]] = {read, self._shutdown}  # type: ignore[arg-type]
        change = None
        if subscription is not None:
            change = asyncio.ensure_future(subscription.queue.get())
            waiters.add(change)  # type: ignore[arg-type]
        try:
            done, _ = await asyncio.wait(waiters, timeout=self.server.idle_timeout,
                                         return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        finally:
            for task in (read, change):
                if task is not None and not task.done():
                    task.cancel()
        if read in done:
            data = read.result()
            if not data:
                raise _Closed
            self.conn.receive_data(data)
        if change is not None and change in done:
            selected = self.ctx.selected
            if selected is not None and change.result().mailbox_id == selected.mailbox_id:
                self.ctx.is_selected_stale = True
            await self._send_updates(may_expunge=True)
            await self.writer.drain()
        if not done:
            await self._bye_and_close()
        if self._shutdown in done:
            await self._bye_and_close()

    async def _send_updates(self, *, may_expunge: bool) -> None:
        """Send pending mailbox updates; a deleted mailbox ends the session with BYE."""
        try:
            self.ctx.note_changes()
            await self.ctx.send_updates(may_expunge=may_expunge)
        except MailboxGone:
            await self._send_bye("the selected mailbox was deleted")
            raise _Closed from None
        except (ConnectionError, _Closed):
            raise
        except Exception:
            # The command itself is done; its answer stands. The updates stay pending
            # and go out at the next boundary.
            log.exception("imap: sending mailbox updates failed")


def _discard_reader_buffer(reader: asyncio.StreamReader) -> None:
    # StreamReader has no public "drop buffered bytes": the plaintext a client pipelined
    # after STARTTLS would otherwise be read as if it came over TLS (CVE-2011-0411 class).
    buffer = getattr(reader, "_buffer", None)
    if isinstance(buffer, bytearray):
        buffer.clear()
