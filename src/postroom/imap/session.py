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
- A waiting session costs no task besides its own (10,000 IDLE clients, issue 8): it
  awaits its socket directly, and news (a change to report in IDLE, shutdown) wakes it by
  cancelling that read (`_Waker`); one watcher task per server covers shutdown.
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
# Commands that never read the selected view's per-message flags and MODSEQs: they run
# without loading them (imap/selected.py), so a session that SELECTs and IDLEs never does.
# Any other command loads them first, once per view.
WITHOUT_VIEW_TABLES: tuple[type[c.Command], ...] = (
    c.Capability, c.Noop, c.Check, c.Logout, c.Id, c.Enable, c.Namespace, c.SelectBase,
    c.Unselect, c.Create, c.Delete, c.Rename, c.Subscribe, c.Unsubscribe, c.List, c.Lsub,
    c.Status, c.Append, c.Copy, c.Move,
)  # fmt: skip


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
        self._wakers: set[_Waker] = set()  # one per live session
        self._shutdown_watch: asyncio.Task[None] | None = None

    async def handle_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        session = _Session(self, reader, writer)
        self._watch(session.waker)
        try:
            await session.run()
        except (_Closed, OSError, asyncio.IncompleteReadError):
            pass  # the peer went away (OSError covers resets and TLS failures)
        finally:
            self._unwatch(session.waker)
            session.close()
            await close_connection(reader, writer)

    # -- shutdown: one watcher for all sessions, alive while there are sessions -----------
    def _watch(self, waker: _Waker) -> None:
        self._wakers.add(waker)
        if self._shutdown_watch is None:
            self._shutdown_watch = asyncio.ensure_future(self._wake_all_at_shutdown())

    def _unwatch(self, waker: _Waker) -> None:
        self._wakers.discard(waker)
        if not self._wakers and self._shutdown_watch is not None:
            self._shutdown_watch.cancel()
            self._shutdown_watch = None

    async def _wake_all_at_shutdown(self) -> None:
        await self.runtime.shutting_down.wait()
        for waker in tuple(self._wakers):
            waker.wake()


class _Waker:
    """Interrupts a session's read when there is news for it (a change in IDLE, shutdown).

    The session awaits `reader.read()` in its own task; `wake` cancels that task, and
    `read` recognises its own cancellation the way `asyncio.timeout` does (counting with
    `Task.uncancel`), returning None instead of raising. Any other cancellation (the
    drain deadline at shutdown) propagates. Data that arrived meanwhile stays in the
    StreamReader's buffer for the next read.
    """

    __slots__ = ("_is_reading", "_is_woken", "_task", "wants_changes")

    def __init__(self) -> None:
        task = asyncio.current_task()
        assert task is not None, "a session runs in its connection's task"
        self._task = task
        self._is_reading = False
        self._is_woken = False
        self.wants_changes = False  # in IDLE a queued change is news

    def wake(self) -> None:
        if self._is_reading and not self._is_woken:
            self._is_woken = True
            self._task.cancel()

    def on_change(self) -> None:
        """`Subscription.on_change`: a change was queued for this session's account."""
        if self.wants_changes:
            self.wake()

    async def read(self, reader: asyncio.StreamReader, seconds: float) -> bytes | None:
        """Up to READ_SIZE bytes (b"" at EOF); None when woken first; TimeoutError when
        nothing came within `seconds`."""
        cancelling = self._task.cancelling()
        self._is_reading = True
        try:
            async with asyncio.timeout(seconds):
                return await reader.read(READ_SIZE)
        except asyncio.CancelledError:
            if self._is_woken and self._task.uncancel() <= cancelling:
                return None
            raise
        finally:
            self._is_reading = False
            self._is_woken = False


class _Session:
    __slots__ = ("_bad_in_a_row", "conn", "ctx", "reader", "runtime", "server", "waker",
                 "writer")

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
        self.waker = _Waker()
        self._bad_in_a_row = 0

    def close(self) -> None:
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
        data = await self._read(self._timeout())
        if data is None:  # between commands only shutdown wakes a session
            await self._bye_and_close()
        self._feed(data)

    async def _read(self, seconds: float) -> bytes | None:
        """The next chunk, or None when woken; BYE and _Closed at shutdown or timeout."""
        if self.runtime.shutting_down.is_set():
            await self._bye_and_close()
        try:
            return await self.waker.read(self.reader, seconds)
        except TimeoutError:
            await self._bye_and_close()
            raise  # not reached: _bye_and_close raises _Closed

    def _feed(self, data: bytes | None) -> None:
        if not data:
            raise _Closed
        self.conn.receive_data(data)

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
        del caps  # this frame lives as long as the connection
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
            if ctx.selected is not None and not isinstance(command, WITHOUT_VIEW_TABLES):
                await ctx.selected.load_tables(self.runtime.store)
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
        if subscription is None or subscription.queue.empty():
            if subscription is not None:
                subscription.on_change = self.waker.on_change
            self.waker.wants_changes = True
            try:
                data = await self._read(self.server.idle_timeout)
            finally:
                self.waker.wants_changes = False
            if data is not None:
                self._feed(data)
                return
            if self.runtime.shutting_down.is_set():
                await self._bye_and_close()
        if subscription is not None:
            self.ctx.note_changes()  # marks the view stale when its mailbox changed
            subscription.drain()  # what is left concerns no selected mailbox
        await self._send_updates(may_expunge=True)
        await self.writer.drain()

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
