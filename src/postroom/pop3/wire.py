"""Sans-IO POP3 wire protocol (RFC 1939, RFC 2449 CAPA, RFC 2595 STLS, RFC 5034 AUTH).

Owns: framing of client lines, parsing them into command events allowed in the current
state, and rendering server responses — single-line `+OK`/`-ERR` (with RFC 2449 response
codes), SASL continuations, and multi-line responses with CRLF normalisation and
dot-stuffing, also as a streaming encoder for large messages.

Invariants:
- `Pop3Connection.next_event()` never raises on client input: anything malformed becomes
  a `Malformed` event; a line longer than the limit is `Malformed(is_fatal=True)`.
- The buffer never grows past the line limit without producing a fatal event, so a driver
  that reads a bounded chunk before each `receive_data` keeps memory bounded.
- Commands are only produced for the state they are valid in (RFC 1939 §3 tables below).
- Rendered multi-line bodies contain only CRLF line endings, every line starting with "."
  is stuffed, and the body ends with CRLF "." CRLF (RFC 1939 §3).

This module imports nothing from asyncio, ssl, socket or postroom.store.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from postroom.security.limits import Refusal

# RFC 2449 §4: command lines are at most 255 octets; real clients exceed it (long
# passwords), so accept up to 1000 and only then give up on the connection.
MAX_COMMAND_LINE = 1000
# RFC 5034 §4: the 255-octet limit does not apply to SASL responses.
MAX_SASL_LINE = 8192
# A message number or line count longer than this is absurd, not merely large.
_MAX_DIGITS = 10

# RFC 2449 §8 response codes, plus RFC 3206 AUTH and SYS/*.
RESPONSE_CODES = frozenset({"IN-USE", "LOGIN-DELAY", "AUTH", "SYS/TEMP", "SYS/PERM"})


class Pop3State(enum.Enum):
    """RFC 1939 §3 session states."""

    AUTHORIZATION = "authorization"
    TRANSACTION = "transaction"
    UPDATE = "update"


# -- events -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class User:
    name: str


@dataclass(frozen=True, slots=True)
class Pass:
    password: str


@dataclass(frozen=True, slots=True)
class Auth:
    """RFC 5034 §4: AUTH mechanism [initial-response]; no mechanism lists them."""

    mechanism: str | None
    initial_response: str | None = None


@dataclass(frozen=True, slots=True)
class Capa:
    pass


@dataclass(frozen=True, slots=True)
class Stls:
    pass


@dataclass(frozen=True, slots=True)
class Quit:
    pass


@dataclass(frozen=True, slots=True)
class Stat:
    pass


@dataclass(frozen=True, slots=True)
class List:
    number: int | None


@dataclass(frozen=True, slots=True)
class Retr:
    number: int


@dataclass(frozen=True, slots=True)
class Dele:
    number: int


@dataclass(frozen=True, slots=True)
class Noop:
    pass


@dataclass(frozen=True, slots=True)
class Rset:
    pass


@dataclass(frozen=True, slots=True)
class Top:
    number: int
    lines: int


@dataclass(frozen=True, slots=True)
class Uidl:
    number: int | None


Command = (
    User | Pass | Auth | Capa | Stls | Quit | Stat | List | Retr | Dele | Noop | Rset | Top | Uidl
)


@dataclass(frozen=True, slots=True)
class SaslResponse:
    """A client line during an AUTH exchange (base64, "=" or "*")."""

    text: str


@dataclass(frozen=True, slots=True)
class Malformed:
    """A line that is not a valid command here; fatal ones end the connection."""

    reason: str
    is_fatal: bool = False


@dataclass(frozen=True, slots=True)
class NeedData:
    pass


Event = Command | SaslResponse | Malformed | NeedData


# -- responses ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ok:
    text: str = ""


@dataclass(frozen=True, slots=True)
class Err:
    text: str
    code: str | None = None


@dataclass(frozen=True, slots=True)
class Continuation:
    """RFC 5034 §4: "+ " followed by a base64 challenge."""

    text: str = ""


@dataclass(frozen=True, slots=True)
class MultiLine:
    """`+OK text` then `body` (raw octets; normalised and dot-stuffed on rendering)."""

    text: str
    body: bytes


Response = Ok | Err | Continuation | MultiLine


# -- parsing ------------------------------------------------------------------------------


class _Invalid(Exception):
    """Internal: a parser's complaint, turned into a Malformed event."""


def _no_args(factory: Callable[[], Command]) -> Callable[[list[str]], Command]:
    def parse(args: list[str]) -> Command:
        if args:
            raise _Invalid("this command takes no arguments")
        return factory()

    return parse


def parse_number(text: str, *, minimum: int = 1) -> int:
    """RFC 1939 §3: a message number is decimal; zero and signs are not message numbers."""
    if not text.isascii() or not text.isdigit() or len(text) > _MAX_DIGITS:
        raise _Invalid(f"invalid number {text[:20]!r}")
    value = int(text)
    if value < minimum:
        raise _Invalid(f"invalid number {text!r}")
    return value


def parse_user(args: list[str]) -> Command:
    if len(args) != 1:
        raise _Invalid("USER needs exactly one name")
    return User(args[0])


def parse_list(args: list[str]) -> Command:
    if len(args) > 1:
        raise _Invalid("LIST takes at most one message number")
    return List(parse_number(args[0]) if args else None)


def parse_uidl(args: list[str]) -> Command:
    if len(args) > 1:
        raise _Invalid("UIDL takes at most one message number")
    return Uidl(parse_number(args[0]) if args else None)


def parse_retr(args: list[str]) -> Command:
    if len(args) != 1:
        raise _Invalid("RETR needs one message number")
    return Retr(parse_number(args[0]))


def parse_dele(args: list[str]) -> Command:
    if len(args) != 1:
        raise _Invalid("DELE needs one message number")
    return Dele(parse_number(args[0]))


def parse_top(args: list[str]) -> Command:
    # RFC 1939 §7: TOP msg n, n non-negative.
    if len(args) != 2:
        raise _Invalid("TOP needs a message number and a line count")
    return Top(parse_number(args[0]), parse_number(args[1], minimum=0))


def parse_auth(args: list[str]) -> Command:
    # RFC 5034 §4: AUTH mechanism [SP initial-response]; bare AUTH lists mechanisms
    # (RFC 1734 practice that Outlook and others still use).
    if not args:
        return Auth(None)
    if len(args) > 2:
        raise _Invalid("AUTH takes a mechanism and an optional initial response")
    return Auth(args[0].upper(), args[1] if len(args) == 2 else None)


_AUTHORIZATION = frozenset({Pop3State.AUTHORIZATION})
_TRANSACTION = frozenset({Pop3State.TRANSACTION})
_EITHER = _AUTHORIZATION | _TRANSACTION

# keyword → (parser of the space-separated arguments, states where it is valid).
# RFC 1939 §4-§7, RFC 2449 §5 (CAPA in both states), RFC 2595 §4 (STLS before login).
# PASS is parsed separately: its argument is the rest of the line, spaces included.
_COMMANDS: dict[str, tuple[Callable[[list[str]], Command], frozenset[Pop3State]]] = {
    "USER": (parse_user, _AUTHORIZATION),
    "AUTH": (parse_auth, _AUTHORIZATION),
    "STLS": (_no_args(Stls), _AUTHORIZATION),
    "CAPA": (_no_args(Capa), _EITHER),
    "QUIT": (_no_args(Quit), _EITHER),
    "STAT": (_no_args(Stat), _TRANSACTION),
    "LIST": (parse_list, _TRANSACTION),
    "RETR": (parse_retr, _TRANSACTION),
    "DELE": (parse_dele, _TRANSACTION),
    "NOOP": (_no_args(Noop), _TRANSACTION),
    "RSET": (_no_args(Rset), _TRANSACTION),
    "TOP": (parse_top, _TRANSACTION),
    "UIDL": (parse_uidl, _TRANSACTION),
}


def parse_command(line: str, state: Pop3State) -> Command | Malformed:
    """One command line (without CRLF) in `state`."""
    keyword, _, rest = line.partition(" ")
    keyword = keyword.upper()
    if keyword == "PASS":
        # RFC 1939 §7 PASS string: the rest of the line, so passwords may hold spaces.
        if state is not Pop3State.AUTHORIZATION:
            return Malformed("PASS is not valid in this state")
        if not rest:
            return Malformed("PASS needs a password")
        return Pass(rest)
    entry = _COMMANDS.get(keyword)
    if entry is None:
        return Malformed("unknown command")
    parser, states = entry
    if state not in states:
        return Malformed(f"{keyword} is not valid in this state")
    try:
        return parser(rest.split())
    except _Invalid as error:
        return Malformed(str(error))


class Pop3Connection:
    """Line framing and per-state parsing for one server-side POP3 connection."""

    def __init__(self, state: Pop3State = Pop3State.AUTHORIZATION) -> None:
        self.state = state
        self._buffer = bytearray()
        self._is_awaiting_sasl = False
        # After a fatal framing error nothing more is parsed: the line boundary is lost.
        self._is_broken = False

    def receive_data(self, data: bytes) -> None:
        if not self._is_broken:
            self._buffer += data

    def enter(self, state: Pop3State) -> None:
        self.state = state

    def expect_sasl_response(self) -> None:
        """The next line is a SASL response, not a command (RFC 5034 §4)."""
        self._is_awaiting_sasl = True

    def discard_buffer(self) -> int:
        """Drop everything received but not parsed (RFC 2595 §4: after STLS)."""
        dropped = len(self._buffer)
        self._buffer.clear()
        return dropped

    def _break(self, reason: str) -> Malformed:
        self._is_broken = True
        self._buffer.clear()
        return Malformed(reason, is_fatal=True)

    def next_event(self) -> Event:
        limit = MAX_SASL_LINE if self._is_awaiting_sasl else MAX_COMMAND_LINE
        if self._is_broken:
            return NeedData()
        end = self._buffer.find(b"\n", 0, limit + 2)
        if end < 0:
            if len(self._buffer) > limit + 1:
                return self._break("line too long")
            return NeedData()
        raw = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        # Lenient framing: a bare LF ends a line too; the CR before it is not content.
        raw = raw.removesuffix(b"\r")
        if len(raw) > limit:
            return self._break("line too long")
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            self._is_awaiting_sasl = False
            return Malformed("line is not valid UTF-8")
        if self._is_awaiting_sasl:
            self._is_awaiting_sasl = False
            return SaslResponse(line)
        return parse_command(line, self.state)


# -- rendering ----------------------------------------------------------------------------


def _one_line(text: str) -> str:
    # A response text must never break the framing, whatever an error message held.
    return text.replace("\r", " ").replace("\n", " ")


def render_ok(text: str = "") -> bytes:
    return ("+OK " + _one_line(text) if text else "+OK").encode() + b"\r\n"


def render_err(text: str, code: str | None = None) -> bytes:
    # RFC 2449 §8: "-ERR [CODE] text"; unknown codes are not invented on the wire.
    prefix = f"[{code}] " if code in RESPONSE_CODES else ""
    return f"-ERR {prefix}{_one_line(text)}".encode() + b"\r\n"


def render_refusal(refusal: Refusal, hostname: str) -> bytes:
    """Instead of the greeting: a temporary condition (RFC 2449 §8.1.2); a
    `RefusalRenderer` (security/limits.py). The hostname is SMTP's to name."""
    return render_err(refusal.value, "SYS/TEMP")


def render_continuation(text: str = "") -> bytes:
    return f"+ {_one_line(text)}".encode() + b"\r\n"


def render_multiline(text: str, body: bytes) -> bytes:
    stuffer = DotStuffer()
    return render_ok(text) + stuffer.feed(body) + stuffer.finish()


def render(response: Response) -> bytes:
    match response:
        case Ok(text):
            return render_ok(text)
        case Err(text, code):
            return render_err(text, code)
        case Continuation(text):
            return render_continuation(text)
        case MultiLine(text, body):
            return render_multiline(text, body)
    raise TypeError(f"not a POP3 response: {response!r}")


def lines_body(lines: Iterable[str]) -> bytes:
    """Lines of a listing (CAPA, LIST, UIDL) as a multi-line body."""
    return b"".join(line.encode() + b"\r\n" for line in lines)


_LINE_END = re.compile(rb"\r\n|\r|\n")


def _is_crlf_only(data: bytes) -> bool:
    """Every CR and LF in `data` is part of a CRLF (stored messages are): no rewriting
    needed. Three C-speed counts instead of a regex substitution per line end."""
    pairs = data.count(b"\r\n")
    return data.count(b"\r") == pairs and data.count(b"\n") == pairs


class DotStuffer:
    """Streaming encoder for a multi-line body (RFC 1939 §3).

    Normalises CR, LF and CRLF to CRLF, stuffs a "." before every line starting with ".",
    and `finish()` closes the body with CRLF "." CRLF (adding the CRLF a body lacks).
    Chunk boundaries may fall anywhere, also between CR and LF.
    """

    __slots__ = ("_has_pending_cr", "_is_at_line_start")

    def __init__(self) -> None:
        self._is_at_line_start = True
        self._has_pending_cr = False

    def feed(self, chunk: bytes) -> bytes:
        if self._has_pending_cr:
            chunk = b"\r" + chunk
            self._has_pending_cr = False
        if chunk.endswith(b"\r"):
            # Hold a trailing CR: the LF completing it may open the next chunk.
            chunk = chunk[:-1]
            self._has_pending_cr = True
        if not chunk:
            return b""
        if not _is_crlf_only(chunk):
            chunk = _LINE_END.sub(b"\r\n", chunk)
        out = chunk.replace(b"\r\n.", b"\r\n..")
        if self._is_at_line_start and out.startswith(b"."):
            out = b"." + out
        self._is_at_line_start = out.endswith(b"\r\n")
        return out

    def finish(self) -> bytes:
        tail = b""
        if self._has_pending_cr:
            tail, self._is_at_line_start = b"\r\n", True
            self._has_pending_cr = False
        if not self._is_at_line_start:
            tail += b"\r\n"
        return tail + b".\r\n"


def normalise_line_endings(raw: bytes) -> bytes:
    return _LINE_END.sub(b"\r\n", raw)


def top_of_message(raw: bytes, lines: int) -> bytes:
    """RFC 1939 §7 TOP: the header, the blank line, then `lines` lines of the body."""
    message = normalise_line_endings(raw)
    if message.startswith(b"\r\n"):
        header, body = b"", message[2:]
    else:
        split = message.find(b"\r\n\r\n")
        if split < 0:
            # No body at all: the whole message is header.
            return message
        header, body = message[: split + 2], message[split + 4 :]
    selected = body.splitlines(keepends=True)[:lines] if lines else []
    return header + b"\r\n" + b"".join(selected)
