"""The asyncio IMAP driver: one task per connection on 143 (STARTTLS) and 993 (TLS).

Owns moving bytes between the socket and the sans-IO `ImapConnection`, timeouts,
STARTTLS, IDLE, shutdown, and mapping errors to the wire in one place (ARCHITECTURE.md
rule 4): BadSyntax → BAD, Refused → NO [code], TryLater → NO [UNAVAILABLE], anything
else → NO [SERVERBUG] with the traceback logged; the connection survives.

Invariants:
- Every read has a deadline that trickling bytes do not move (issue 25 §6). Before login
  it is IMAP_LOGIN_TIMEOUT from connect, whatever is sent. After it, the whole next
  command — its line and literals, or IDLE up to DONE — is due within IMAP_IDLE_TIMEOUT
  (RFC 9051 §5.4: the autologout timer is at least 30 minutes) of our previous tagged
  response (of the IDLE continuation), plus one second per MIN_UPLOAD_RATE bytes of the
  command received so far, so a big APPEND on a slow but honest link still completes.
- Bytes pipelined after STARTTLS are discarded, never executed (RFC 9051 §6.2.1).
- Mailbox updates go out after each command and during IDLE; EXPUNGE never while
  answering FETCH, STORE or SEARCH (RFC 9051 §7.5.1). IDLE learns of changes from the
  change feed, so new mail reaches an idling client within a second. Under NOTIFY
  (RFC 5465) news also goes out while waiting between commands, never inside one; after
  LOGOUT's BYE nothing untagged follows (RFC 9051 §6.1.3).
- When `runtime.shutting_down` is set, an idle or waiting session says BYE and closes.
- Output is gathered and handed to the transport before every wait for input (and past
  COALESCE_BELOW bytes): nothing written stays unsent while the session waits, and a
  command's untagged lines and tagged reply leave in one TLS record and one send().
- After COMPRESS (RFC 4978) every byte both ways passes the `DeflateLayer`
  (imap/compress.py): output is sync-flushed before each wait for input, input is
  inflated in bounded chunks only as the parser asks for more. Deadline credit counts
  wire bytes, not inflated ones: the credit exists for slow links, whose cost is what
  crosses the wire, and inflated bytes would let a few KiB of zeros buy the full credit.
- A waiting session costs no task besides its own (10,000 IDLE clients, issue 8): it
  awaits its socket directly, and news (a change to report in IDLE or under NOTIFY,
  shutdown) wakes it by cancelling that read (`_Waker`, over wakers.py's `Waker`); one
  watcher task per server covers shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from postroom.closing import close_connection
from postroom.errors import BadSyntax, Refused, TryLater
from postroom.imap.commands import CAPABILITIES, SPECS, CommandSpec, Context, Done, is_allowed
from postroom.imap.commands.notify import publish_session_change, send_notifications
from postroom.imap.compress import CompressionError, DeflateLayer
from postroom.imap.selected import MailboxGone
from postroom.imap.wire.commands import Command
from postroom.imap.wire.commands.auth import StartTls, Unauthenticate
from postroom.imap.wire.commands.misc import Compress, Idle
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
)
from postroom.imap.wire.responses import (
    Atom,
    render_continuation,
    render_tagged,
    render_untagged_status,
)
from postroom.metrics import note_imap_command
from postroom.runtime import Runtime
from postroom.wakers import Waker, Wakers

log = logging.getLogger("postroom.imap")

READ_SIZE = 65536
# After login, every MIN_UPLOAD_RATE bytes of a command received add one second to its
# deadline: a client must average at least this rate beyond IMAP_IDLE_TIMEOUT (64 kbit/s,
# below any link a client uploads mail over today). Credit follows bytes that arrived,
# not a literal's announced size, so announcing {52428800} and trickling buys nothing.
# Credit stops at what one command may carry (line limit + literal limit), so a client
# streaming junk fast is cut off too: with the default 10,240,000-byte message size
# limit, by 1800 s + 1258 s.
MIN_UPLOAD_RATE = 8 * 1024
DRAIN_ABOVE = 256 * 1024  # flush the socket buffer once this much output is queued
# A command's output is gathered and handed to the transport in one piece when the
# session is about to wait (or past this size): one TLS record and one send() for a
# FETCH of ten messages' flags and its tagged OK, not eleven (issue 22 profile).
COALESCE_BELOW = 64 * 1024
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
        preauth_timeout: float | None = None,
        idle_timeout: float | None = None,
    ) -> None:
        self.runtime = runtime
        self.implicit_tls = implicit_tls
        # IMAP_LOGIN_TIMEOUT and IMAP_IDLE_TIMEOUT; the parameters are for tests.
        config = runtime.config
        self.preauth_timeout = float(config.imap_login_timeout if preauth_timeout is None
                                     else preauth_timeout)
        self.idle_timeout = float(config.imap_idle_timeout if idle_timeout is None
                                  else idle_timeout)
        self._wakers = Wakers(runtime.shutting_down)  # one per live session

    async def handle_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        session = _Session(self, reader, writer)
        self._wakers.add(session.waker)
        try:
            await session.run()
        except (_Closed, OSError, asyncio.IncompleteReadError):
            pass  # the peer went away (OSError covers resets and TLS failures)
        finally:
            self._wakers.discard(session.waker)
            session.close()
            await close_connection(reader, writer)

class _Waker(Waker):
    """The shared `Waker` (wakers.py), woken also by a change queued for the session
    while it wants changes (IDLE, NOTIFY)."""

    __slots__ = ("wants_changes",)

    def __init__(self) -> None:
        super().__init__()
        self.wants_changes = False  # in IDLE a queued change is news

    def on_change(self) -> None:
        """`Subscription.on_change`: a change was queued for this session's account."""
        if self.wants_changes:
            self.wake()


class _Session:
    __slots__ = ("_bad_in_a_row", "_deadline", "_deflate", "_login_deadline", "_out",
                 "_out_size", "_received", "conn", "ctx", "reader", "runtime", "server",
                 "waker", "writer")

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
                           is_implicit_tls=server.implicit_tls,
                           capabilities_after_login=CAPABILITIES)  # fmt: skip
        self.waker = _Waker()
        self._note_tls_compression()
        self._bad_in_a_row = 0
        now = asyncio.get_running_loop().time()
        self._login_deadline = now + server.preauth_timeout  # from connect, whatever is sent
        self._deadline = now + server.idle_timeout  # the current command's, after login
        self._received = 0  # wire bytes of the current command so far (MIN_UPLOAD_RATE)
        self._deflate: DeflateLayer | None = None  # after COMPRESS DEFLATE
        self._out: list[bytes] = []  # written, not yet handed to the transport
        self._out_size = 0

    def close(self) -> None:
        if self.ctx.subscription is not None:
            self.ctx.subscription.close()

    # -- SessionIO ----------------------------------------------------------------------
    async def write(self, data: bytes) -> None:
        if self._deflate is not None:
            data = self._deflate.compress(data)
        if data:
            self._out.append(data)
            self._out_size += len(data)
            if self._out_size >= COALESCE_BELOW:
                self._push()
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

    # -- deadlines --------------------------------------------------------------------------
    def _restart_deadline(self) -> None:
        """Our answer to a command (or IDLE's continuation): the next one is due from now."""
        self._deadline = asyncio.get_running_loop().time() + self.server.idle_timeout
        self._received = 0

    def _remaining(self) -> float:
        """Seconds left for the input the session waits for (negative: none)."""
        now = asyncio.get_running_loop().time()
        if self.ctx.state is ConnectionState.NOT_AUTHENTICATED:
            return self._login_deadline - now
        most = self.conn.max_line_length + self.conn.max_literal_size
        return self._deadline + min(self._received, most) / MIN_UPLOAD_RATE - now

    # -- writing ----------------------------------------------------------------------------
    def _push(self) -> None:
        """What `write` gathered, to the transport in one piece (COALESCE_BELOW)."""
        if self._out:
            self.writer.write(b"".join(self._out) if len(self._out) > 1 else self._out[0])
            self._out.clear()
            self._out_size = 0

    def _end_batch(self) -> None:
        """Everything written goes to the transport; RFC 4978 §4: sync-flush the deflater
        so the client can read what we wrote."""
        self._push()
        if self._deflate is not None and (tail := self._deflate.flush()):
            self.writer.write(tail)

    async def _flush(self) -> None:
        self._end_batch()
        await self.writer.drain()

    # -- reading ----------------------------------------------------------------------------
    async def _receive(self) -> None:
        """Read one chunk into the connection, or raise _Closed (after saying BYE)."""
        if self._deflate is not None and self._deflate.has_pending:
            await self._inflate()  # more of what we already read, without the socket
            return
        # RFC 5465 §4: under NOTIFY, news goes out between commands too (never inside
        # one: a partly received command is still in the connection's buffer).
        is_between = self.ctx.notify is not None and self.conn.buffered_size == 0
        if is_between and self._has_news():
            await self._send_news()
            return
        data = await (self._read_or_news() if is_between else self._read())
        if data is None:  # woken: news under NOTIFY, else only shutdown
            if not is_between or self.runtime.shutting_down.is_set():
                await self._bye_and_close()
            await self._send_news()
            return
        await self._feed(data)

    def _has_news(self) -> bool:
        subscription = self.ctx.subscription
        return subscription is not None and not subscription.queue.empty()

    async def _send_news(self) -> None:
        await self._send_updates(may_expunge=False, is_between_commands=True)
        await self._flush()

    async def _read_or_news(self) -> bytes | None:
        """`_read`, but a change queued for this session wakes it too (None)."""
        subscription = self.ctx.subscription
        if subscription is not None:
            subscription.on_change = self.waker.on_change
        self.waker.wants_changes = True
        try:
            return await self._read()
        finally:
            self.waker.wants_changes = False

    async def _read(self) -> bytes | None:
        """The next chunk, or None when woken; BYE and _Closed at shutdown or when the
        deadline has passed."""
        remaining = self._remaining()
        if self.runtime.shutting_down.is_set() or remaining <= 0:
            await self._bye_and_close()
        self._end_batch()  # whatever we wrote must reach the client before we wait
        try:
            return await self.waker.read(self.reader, READ_SIZE, remaining)
        except TimeoutError:
            await self._bye_and_close()
            raise  # not reached: _bye_and_close raises _Closed

    async def _feed(self, data: bytes | None) -> None:
        if not data:
            raise _Closed
        self._received += len(data)  # wire bytes (module docstring)
        if self._deflate is None:
            self.conn.receive_data(data)
            return
        self._deflate.receive(data)
        await self._inflate()

    async def _inflate(self) -> None:
        """One bounded chunk of the inflated stream into the parser; BYE on a bomb."""
        assert self._deflate is not None
        try:
            self.conn.receive_data(self._deflate.inflate())
        except CompressionError as error:
            log.info("imap: closing a compressed connection: %s", error)
            await self._send_bye(str(error))
            raise _Closed from error

    async def _bye_and_close(self) -> None:
        if self.runtime.shutting_down.is_set():
            text = "postroom shutting down"
        else:
            text = "autologout: idle for too long"  # RFC 9051 §5.4
        await self._send_bye(text)
        raise _Closed

    async def _send_bye(self, text: str) -> None:
        with contextlib.suppress(ConnectionError):
            await self.write(render_untagged_status("BYE", text))
            await self._flush()

    # -- main loop ----------------------------------------------------------------------------
    async def run(self) -> None:
        if self.runtime.shutting_down.is_set():
            await self._send_bye("postroom shutting down")
            return
        caps = [Atom(cap) for cap in self.ctx.capabilities()]
        await self.write(render_untagged_status("OK", "postroom ready", "CAPABILITY", caps))
        del caps  # this frame lives as long as the connection
        await self._flush()
        while self.ctx.state is not ConnectionState.LOGOUT:
            event = self.conn.next_event()
            if event is NeedData:
                await self._flush()
                await self._receive()
            elif isinstance(event, NeedContinuation):
                await self.write(self.conn.send_continuation())
                await self._flush()
            elif isinstance(event, Command):
                await self._run_command(event)
            else:
                await self._protocol_error(event)
        await self._flush()  # LOGOUT's BYE and OK, deflated

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
        self._restart_deadline()

    async def _run_command(self, command: Command) -> None:
        ctx = self.ctx
        if not is_allowed(command, ctx.state):
            text = f"{type(command).__name__.upper()} not allowed now ({ctx.state.value})"
            await self._tagged(command.tag, Done(text, status="BAD"))
            return
        spec = SPECS[type(command)]  # every allowed command has one
        if isinstance(command, StartTls):
            await self._starttls(command)
            return
        if isinstance(command, Idle):
            await self._idle(command)
            return
        started = time.monotonic()
        done = await self._call(command, spec)
        note_imap_command(type(command).__name__.upper(), time.monotonic() - started)
        if ctx.state is not ConnectionState.LOGOUT:  # after BYE nothing untagged (§6.1.3)
            await self._send_updates(may_expunge=spec.allows_expunge)
        await self._tagged(command.tag, done)
        if isinstance(command, Compress) and done.status == "OK":
            await self._start_deflate()
        elif isinstance(command, Unauthenticate) and done.status == "OK":
            # RFC 8437 §3: as after connect, the next login is due within the login timeout.
            now = asyncio.get_running_loop().time()
            self._login_deadline = now + self.server.preauth_timeout
        elif done.status == "OK":
            await publish_session_change(self.ctx, command)  # for NOTIFY (RFC 5465 §5.5)

    def _note_tls_compression(self) -> None:
        """RFC 4978 §3: COMPRESS gets NO [COMPRESSIONACTIVE] over a compressing TLS layer
        (our contexts refuse TLS compression; this holds whatever a context allows)."""
        ssl_object = self.writer.get_extra_info("ssl_object")
        if ssl_object is not None and ssl_object.compression() is not None:
            self.ctx.is_compressed = True

    async def _start_deflate(self) -> None:
        """RFC 4978 §3: compression starts right after the tagged OK, both ways. Bytes
        the client sent after the command line are already compressed."""
        await self._flush()
        self._deflate = DeflateLayer()
        self.ctx.is_compressed = True
        leftover = self.conn.take_buffered()
        if leftover:
            self._deflate.receive(leftover)

    async def _call(self, command: Command, spec: CommandSpec) -> Done:
        ctx = self.ctx
        handle = spec.handle
        assert handle is not None, "only STARTTLS and IDLE have no handler"
        try:
            ctx.note_changes()
            if ctx.selected is not None and ctx.is_selected_stale:
                # Fresh flags before acting; the updates themselves go out afterwards.
                await ctx.selected.refresh(self.runtime.store, self.runtime.feed)
                ctx.is_selected_stale = False
            if ctx.selected is not None and spec.needs_view_tables:
                await ctx.selected.load_tables(self.runtime.store)
            await ctx.announce_keywords()  # a new keyword's FLAGS before any FETCH shows it
            return await handle(ctx, command)
        except MailboxGone:
            await self._send_bye("the selected mailbox was deleted")
            raise _Closed from None
        except BadSyntax as error:
            return Done(str(error), status="BAD")
        except Refused as error:
            return Done(str(error), error.code, status="NO")
        except TryLater as error:  # storage failures carry their code: OVERQUOTA when full
            code = getattr(error, "imap_code", "UNAVAILABLE")
            return Done(str(error) or "try again later", code, status="NO")
        except (ConnectionError, _Closed):
            raise  # the peer is gone: nothing to answer
        except Exception:
            log.exception("imap: %s failed", type(command).__name__.upper())
            return Done("internal server error", "SERVERBUG", status="NO")

    # -- STARTTLS ----------------------------------------------------------------------------
    async def _starttls(self, command: StartTls) -> None:
        if self.ctx.is_tls or self._deflate is not None:
            # RFC 4978 §4: TLS goes below compression, never above it.
            await self._tagged(command.tag, Done("TLS is already active", status="BAD"))
            return
        await self._tagged(command.tag, Done("begin TLS negotiation now"))
        await self._flush()
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
        self._note_tls_compression()

    # -- IDLE --------------------------------------------------------------------------------
    async def _idle(self, command: Idle) -> None:
        """RFC 2177 / RFC 9051 §6.3.13: updates as they happen until the client says DONE."""
        await self._send_updates(may_expunge=True)
        await self.write(render_continuation("idling"))
        await self._flush()
        self._restart_deadline()  # DONE is due within IMAP_IDLE_TIMEOUT, news or not
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
        """Wait for input, a change to report, shutdown or the autologout deadline."""
        if self._deflate is not None and self._deflate.has_pending:
            await self._inflate()  # DONE may already be in what we read
            return
        subscription = self.ctx.subscription
        if subscription is None or subscription.queue.empty():
            data = await self._read_or_news()
            if data is not None:
                await self._feed(data)
                return
            if self.runtime.shutting_down.is_set():
                await self._bye_and_close()
        if subscription is not None:
            self.ctx.note_changes()  # marks the view stale when its mailbox changed
            subscription.drain()  # what is left concerns no selected mailbox
        await self._send_updates(may_expunge=True)
        await self._flush()

    async def _send_updates(self, *, may_expunge: bool, is_between_commands: bool = False
                            ) -> None:  # fmt: skip
        """Send pending mailbox updates and NOTIFY's news (between commands, only what
        NOTIFY asked for); a deleted mailbox ends the session with BYE."""
        try:
            self.ctx.note_changes()
            if not is_between_commands:
                await self.ctx.send_updates(may_expunge=may_expunge)
            if self.ctx.notify is not None:
                await send_notifications(self.ctx, is_between_commands=is_between_commands)
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
