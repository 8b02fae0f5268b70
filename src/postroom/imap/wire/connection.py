"""Sans-IO IMAP server connection: bytes in, events out (RFC 9051 §2.2, §4.3; RFC 7888).

Owns: `ImapConnection` (framing of commands with their literals, line/literal limits,
raw-line mode for AUTHENTICATE and IDLE), the event types it returns, the session
`ConnectionState` enum. Which commands each state allows is a fact of each command's
spec (`imap/commands/`), checked by the session.

Driver contract (h11 style):
    conn.receive_data(chunk)             # b"" is not special; EOF is the driver's business
    while True:
        event = conn.next_event()
        if event is NeedData: break                      # read more bytes
        NeedContinuation(size) → write conn.send_continuation(), keep looping
        Command             → run the handler, write its responses
        SyntaxErrorEvent | LiteralTooBig | LineTooLong
                            → write render_protocol_error(event) (BAD, or NO [TOOBIG] for
                              an APPEND literal); for LiteralTooBig the connection has
                              already arranged to skip whatever the client still sends
        RawLine(line)       → only after expect_line(): the AUTHENTICATE answer ("*" means
                              cancel, RFC 9051 §6.2.2) or IDLE's "DONE" (any case, §6.3.13)

Invariants:
- Events come out in wire order; `next_event` parses at most one command per call and
  never looks ahead, so a driver may call `expect_line()` after IDLE/AUTHENTICATE and the
  following buffered bytes are read as that raw line, not as a command.
- A synchronizing literal over the limit is never read: the connection does not announce
  it and starts the next command right after its line (the client, having got a tagged
  answer instead of "+", sends no literal). A non-synchronizing literal over the limit is
  skipped byte for byte, then the rest of that command (and any further `{n+}` literals
  in it) is discarded, so no literal data is ever run as a command.
- Memory is bounded by max_line_length (command text) + max_literal_size (the literals of
  one command, summed) + one read chunk. Buffers are a bytearray with an offset,
  compacted once per `receive_data`, so large literals cost no quadratic copying.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from postroom.imap.wire.commands import Command, parse_command, read_command_name
from postroom.imap.wire.grammar import parse_tag
from postroom.imap.wire.lexer import Lexer, ParseError
from postroom.imap.wire.responses import render_tagged, render_untagged_status

DEFAULT_MAX_LINE_LENGTH = 64 * 1024
DEFAULT_MAX_LITERAL_SIZE = 50 * 1024 * 1024
LITERAL_MINUS_LIMIT = 4096  # RFC 7888 §5: LITERAL- non-synchronizing literals
CONTINUATION = b"+ Ready for literal data\r\n"
# A literal marker ends a line: ["~"] "{" number ["+"] "}" CRLF (RFC 9051 §4.3, RFC 7888,
# RFC 3516 literal8). Digits are capped so the int() below stays cheap.
_MARKER = re.compile(rb"(~?)\{([0-9]{1,20})(\+?)\}\r?\n\Z")
_DISCARD_TAIL = 32  # bytes of a discarded line kept to spot a trailing {n+} marker


class _NeedDataType:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NeedData"


NeedData = _NeedDataType()  # sentinel: compare with `is`


@dataclass(frozen=True, slots=True)
class NeedContinuation:
    """A synchronizing literal of `size` octets was announced: send the "+" line now."""

    size: int


@dataclass(frozen=True, slots=True)
class SyntaxErrorEvent:
    tag: str | None
    message: str


@dataclass(frozen=True, slots=True)
class LiteralTooBig:
    """A literal above the limit. `command` is e.g. "APPEND" when it could be read."""

    tag: str | None
    size: int
    is_synchronizing: bool
    command: str | None = None


@dataclass(frozen=True, slots=True)
class LineTooLong:
    tag: str | None


@dataclass(frozen=True, slots=True)
class RawLine:
    """One line read in `expect_line()` mode, without its CRLF."""

    line: bytes


Event = (
    Command
    | _NeedDataType
    | NeedContinuation
    | SyntaxErrorEvent
    | LiteralTooBig
    | LineTooLong
    | RawLine
)


class ConnectionState(Enum):
    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


class _Mode(Enum):
    COMMAND = "command"
    RAW_LINE = "raw line"
    DISCARD = "discard rest of command"


def _peek_tag_and_name(text: bytes) -> tuple[str | None, str | None]:
    lx = Lexer(text)
    try:
        tag = parse_tag(lx)
    except ParseError:
        return None, None
    try:
        lx.expect_sp()
        return tag, read_command_name(lx)
    except ParseError:
        return tag, None


class ImapConnection:
    """Server side of one IMAP connection; see the module docstring for the contract."""

    def __init__(
        self,
        *,
        max_line_length: int = DEFAULT_MAX_LINE_LENGTH,
        max_literal_size: int = DEFAULT_MAX_LITERAL_SIZE,
        is_literal_minus: bool = False,
    ) -> None:
        self.max_line_length = max_line_length
        self.max_literal_size = max_literal_size
        self.is_literal_minus = is_literal_minus  # advertising LITERAL- not LITERAL+
        self.state = ConnectionState.NOT_AUTHENTICATED  # the driver moves it
        self.is_utf8 = False  # set by enable_utf8() after ENABLE UTF8=ACCEPT / IMAP4rev2
        self._buf = bytearray()
        self._start = 0  # first unconsumed byte in _buf
        self._mode = _Mode.COMMAND
        self._skip = 0  # literal bytes still to drop
        self._reset_command()

    def _reset_command(self) -> None:
        # Offsets below are relative to self._start (the current command's first byte).
        self._line_off = 0  # where the current line of the command begins
        self._search_off = 0  # where to resume looking for LF
        self._text_len = 0  # command text seen so far, literals excluded
        self._literal_total = 0

    # -- driver API ---------------------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        if self._start:
            del self._buf[: self._start]
            self._start = 0
        self._buf += data

    def expect_line(self) -> None:
        """Make the next event a `RawLine` (AUTHENTICATE continuation answer, IDLE DONE)."""
        self._mode = _Mode.RAW_LINE
        self._reset_command()

    def enable_utf8(self) -> None:
        """RFC 9051 §5.1 / RFC 6855 §3: mailbox names are UTF-8 from now on."""
        self.is_utf8 = True

    def take_buffered(self) -> bytes:
        """Remove and return everything received but not yet parsed: after COMPRESS
        (RFC 4978 §3) those bytes belong to the compressed stream, not to this parser."""
        data = bytes(self._buf[self._start :])
        self.discard_buffered()
        return data

    def discard_buffered(self) -> int:
        """Drop everything received but not yet parsed (RFC 9051 §6.2.1: bytes pipelined
        after STARTTLS must not be executed). Returns the number of bytes dropped."""
        dropped = len(self._buf) - self._start
        self._buf.clear()
        self._start = 0
        self._reset_command()
        if self._mode is not _Mode.RAW_LINE:
            self._mode = _Mode.COMMAND
        self._skip = 0
        return dropped

    @staticmethod
    def send_continuation(text: str = "Ready for literal data") -> bytes:
        return CONTINUATION if text == "Ready for literal data" else f"+ {text}\r\n".encode()

    @property
    def buffered_size(self) -> int:
        return len(self._buf) - self._start

    def next_event(self) -> Event:
        while True:
            if self._skip and not self._skip_literal():
                return NeedData
            if self._mode is _Mode.DISCARD:
                if not self._discard_step():
                    return NeedData
                continue
            if self._mode is _Mode.RAW_LINE:
                return self._raw_line_step()
            event = self._command_step()
            if event is not None:
                return event

    # -- steps ------------------------------------------------------------------------------------
    def _skip_literal(self) -> bool:
        available = len(self._buf) - self._start
        taken = min(available, self._skip)
        self._start += taken
        self._skip -= taken
        return self._skip == 0

    def _discard_step(self) -> bool:
        """Drop the rest of a refused command line; return True when the line ended."""
        lf = self._buf.find(b"\n", self._start)
        if lf < 0:
            self._start = max(self._start, len(self._buf) - _DISCARD_TAIL)
            return False
        tail = bytes(self._buf[max(self._start, lf + 1 - _DISCARD_TAIL) : lf + 1])
        self._start = lf + 1
        marker = _MARKER.search(tail)
        if marker and marker.group(3):  # {n+}: the client sends the bytes regardless
            self._skip = int(marker.group(2))
        else:
            self._mode = _Mode.COMMAND
        self._reset_command()
        return True

    def _raw_line_step(self) -> Event:
        lf = self._buf.find(b"\n", self._start + self._search_off)
        if lf < 0:
            if len(self._buf) - self._start > self.max_line_length:
                self._mode = _Mode.DISCARD
                return LineTooLong(None)
            self._search_off = len(self._buf) - self._start
            return NeedData
        line = bytes(self._buf[self._start : lf + 1])
        self._start = lf + 1
        self._mode = _Mode.COMMAND
        self._reset_command()
        return RawLine(line.rstrip(b"\n").rstrip(b"\r"))

    def _command_step(self) -> Event | None:
        """Advance over one line of the current command; None means "loop again"."""
        base = self._start
        if len(self._buf) - base < self._line_off:
            return NeedData  # still waiting for literal bytes
        lf = self._buf.find(b"\n", base + max(self._search_off, self._line_off))
        if lf < 0:
            self._search_off = len(self._buf) - base
            if self._text_len + self._search_off - self._line_off > self.max_line_length:
                return self._refuse_line()
            return NeedData
        segment = lf + 1 - (base + self._line_off)
        if self._text_len + segment > self.max_line_length + 2:
            return self._refuse_line()
        line = bytes(self._buf[base + self._line_off : lf + 1])
        marker = _MARKER.search(line)
        if marker is None:
            return self._finish_command(lf + 1)
        return self._literal_marker(marker, lf + 1, segment)

    def _refuse_line(self) -> Event:
        tag, _ = _peek_tag_and_name(bytes(self._buf[self._start : self._start + 256]))
        self._mode = _Mode.DISCARD
        self._start += self._line_off  # keep only the current line for discard_step
        self._reset_command()
        return LineTooLong(tag)

    def _literal_marker(self, marker: re.Match[bytes], end: int, segment: int) -> Event | None:
        size = int(marker.group(2))
        is_sync = not marker.group(3)
        limit = self.max_literal_size - self._literal_total
        if not is_sync and self.is_literal_minus:
            limit = min(limit, LITERAL_MINUS_LIMIT)
        if size > limit:
            tag, name = _peek_tag_and_name(bytes(self._buf[self._start : self._start + 256]))
            self._start = end
            self._reset_command()
            # RFC 7888 §4: a refused {n+} literal is still sent; skip it and the rest
            # of the command. A refused {n} literal is never sent.
            self._skip = 0 if is_sync else size
            self._mode = _Mode.COMMAND if is_sync else _Mode.DISCARD
            return LiteralTooBig(tag, size, is_sync, name)
        self._text_len += segment
        self._literal_total += size
        self._line_off = self._search_off = end - self._start + size
        return NeedContinuation(size) if is_sync else None

    def _finish_command(self, end: int) -> Event:
        frame = bytes(self._buf[self._start : end])
        self._start = end
        self._reset_command()
        text = frame[:-2] if frame.endswith(b"\r\n") else frame[:-1]
        if not text:
            return SyntaxErrorEvent(None, "empty command line")
        try:
            return parse_command(text, is_utf8=self.is_utf8)
        except ParseError as exc:
            return SyntaxErrorEvent(exc.tag, exc.message)


def render_protocol_error(event: SyntaxErrorEvent | LiteralTooBig | LineTooLong) -> bytes:
    """The one wire mapping of protocol-error events (ARCHITECTURE.md rule 4: BAD).

    An over-large APPEND literal is a refusal, not a syntax error: NO [TOOBIG]
    (RFC 9051 §6.3.12, §7.1); other over-large literals get BAD [TOOBIG] (RFC 7888 §4).
    Without a readable tag the answer is untagged (`* BAD`, RFC 9051 §7.1.3).
    """
    if isinstance(event, SyntaxErrorEvent):
        status, code, text = "BAD", None, event.message
    elif isinstance(event, LiteralTooBig):
        status = "NO" if event.command == "APPEND" else "BAD"
        code, text = "TOOBIG", f"literal of {event.size} octets is too big"
    else:
        status, code, text = "BAD", "TOOBIG", "command line too long"
    if event.tag is None:
        return render_untagged_status("BAD", text, code)
    return render_tagged(event.tag, status, text, code)
