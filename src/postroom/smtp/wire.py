"""Sans-IO SMTP server protocol core: bytes in, command and data events out.

Owns the SMTP wire grammar (RFC 5321): command-line framing and limits, verbs and their
arguments (paths and ESMTP parameters are parsed by smtp/paths.py), and DATA framing
with dot-unstuffing.

Shape (as h11): `receive_data(bytes)` (b"" = EOF), then `next_event()` until `NeedData`.
The driver decides what a command means; it switches the parser into DATA mode with
`begin_data()` only after it has sent 354, and into SASL mode with `expect_auth_response()`
after a 334, so a refused DATA or AUTH never turns later lines into message text.

Invariants:
- DATA is streamed: `DataChunk`s are dot-unstuffed slices, never the whole message.
- End of data is ONLY `<CRLF>.<CRLF>` (RFC 5321 §4.1.1.4): `<LF>.<LF>`, `<CRLF>.<LF>`
  and `<LF>.<CRLF>` never end it (SMTP smuggling, 2023). What a bare LF does follows
  Postfix 3.9's `smtpd_forbid_bare_newline` (`BareNewlinePolicy`): NORMALIZE (the
  default) reads a lone LF as CRLF, in command lines and in DATA, where the body is
  handed out with CRLF and a line after a lone LF is dot-unstuffed like any other, but
  the next line never counts as the end marker; REJECT taints the message (the parser
  consumes to the real end marker and reports `BareNewline` instead of `DataEnd`,
  nothing is ever delivered from it) and refuses such command lines. A bare CR taints the
  message under both.
- BDAT (RFC 3030 §2): `BDAT n [LAST]` is followed by exactly n octets, taken as they are
  (no dot-unstuffing, no end marker, no bare CR/LF policy: binary data is legal). The
  parser switches into CHUNK mode by itself the moment it parses the command line,
  because the octets follow whether or not the driver accepts the command; the driver
  calls `discard_chunk()` to have them read and dropped (a refused or failed BDAT, §2),
  and answers at `ChunkEnd`. A malformed BDAT line is `BadBdat`: nobody knows where its
  chunk ends, so the driver must close the connection rather than read chunk octets as
  commands.
- The size limit is enforced while streaming: past it, chunks are dropped, the parser
  keeps consuming to the end marker and reports `SizeExceeded`.
- Every buffer is bounded: command lines by `MAX_BUFFERED_LINE`, DATA and BDAT chunks by
  streaming.
This module imports nothing from asyncio, ssl, socket or postroom.store.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from postroom.mail.esmtp import MailParams, RcptParams
from postroom.smtp.paths import (
    Mailbox,
    ParameterError,
    parse_mail_params,
    parse_params,
    parse_path,
    parse_rcpt_params,
    split_path,
)

# RFC 5321 §4.5.3.1.4: 512 octets including CRLF for a command line...
MAX_COMMAND_LINE = 512
# ...raised for MAIL/RCPT by the extensions we advertise: RFC 3461 §4 (ENVID ≤100, ORCPT
# ≤500 more) and RFC 4954 §5 (AUTH= ≤500 more).
MAX_PATH_COMMAND_LINE = 2048
# RFC 4954 §4: AUTH command and SASL response lines may be up to 12288 octets.
MAX_AUTH_LINE = 12288
MAX_BUFFERED_LINE = MAX_AUTH_LINE


# -- events ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NeedData:
    """The parser needs more bytes (the driver flushes replies, then reads)."""


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The peer closed its side (EOF)."""


@dataclass(frozen=True, slots=True)
class LineTooLong:
    """A command line over the limit; it was skipped up to its LF."""


@dataclass(frozen=True, slots=True)
class BadCommand:
    """A line that does not parse. `kind` picks the reply (500, 501 or 555)."""

    reason: str
    kind: BadKind


class BadKind(enum.Enum):
    UNRECOGNIZED = "unrecognized"  # 500 5.5.2 (RFC 5321 §4.2.4)
    SYNTAX = "syntax"  # 501 5.5.4
    BARE_NEWLINE = "bare-newline"  # 500 5.5.2: command lines must end in CRLF
    PARAMETER = "parameter"  # 555 5.5.4 (RFC 5321 §4.1.1.11)


@dataclass(frozen=True, slots=True)
class BadBdat:
    """A BDAT line that does not parse: the chunk's length is unknown (see the docstring)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Helo:
    domain: str


@dataclass(frozen=True, slots=True)
class Ehlo:
    domain: str


@dataclass(frozen=True, slots=True)
class Mail:
    address: Mailbox | None  # None is the null reverse-path `<>`
    params: MailParams = field(default_factory=MailParams)


@dataclass(frozen=True, slots=True)
class Rcpt:
    address: Mailbox
    params: RcptParams = field(default_factory=RcptParams)


@dataclass(frozen=True, slots=True)
class Data:
    pass


@dataclass(frozen=True, slots=True)
class Bdat:
    """RFC 3030 §2 `BDAT chunk-size [LAST]`; the chunk's octets follow as `DataChunk`s
    (unless discarded), then `ChunkEnd`."""

    size: int
    is_last: bool


@dataclass(frozen=True, slots=True)
class Rset:
    pass


@dataclass(frozen=True, slots=True)
class Noop:
    pass


@dataclass(frozen=True, slots=True)
class Quit:
    pass


@dataclass(frozen=True, slots=True)
class Vrfy:
    argument: str


@dataclass(frozen=True, slots=True)
class Expn:
    argument: str


@dataclass(frozen=True, slots=True)
class Help:
    argument: str


@dataclass(frozen=True, slots=True)
class StartTls:
    pass


@dataclass(frozen=True, slots=True)
class Auth:
    mechanism: str  # upper-cased
    initial: str | None  # the initial response as sent ("=" means empty), or None


@dataclass(frozen=True, slots=True)
class AuthResponse:
    line: str


@dataclass(frozen=True, slots=True)
class DataChunk:
    data: bytes


@dataclass(frozen=True, slots=True)
class DataEnd:
    size: int


@dataclass(frozen=True, slots=True)
class ChunkEnd:
    """All octets of a BDAT chunk were read (handed out or, if discarded, dropped)."""

    size: int
    is_last: bool


@dataclass(frozen=True, slots=True)
class SizeExceeded:
    size: int


@dataclass(frozen=True, slots=True)
class BareNewline:
    character: str  # "LF" or "CR"


Command = (Helo | Ehlo | Mail | Rcpt | Data | Bdat | Rset | Noop | Quit | Vrfy | Expn | Help
           | StartTls | Auth)
Event = (Command | AuthResponse | DataChunk | DataEnd | ChunkEnd | SizeExceeded | BareNewline
         | NeedData | ConnectionClosed | LineTooLong | BadCommand | BadBdat)


class Mode(enum.Enum):
    COMMAND = "command"
    AUTH_RESPONSE = "auth-response"
    DATA = "data"
    CHUNK = "chunk"  # inside a BDAT chunk (RFC 3030)


class BareNewlinePolicy(enum.Enum):
    """Postfix 3.9 `smtpd_forbid_bare_newline` (`yes` is its alias for `normalize`)."""

    NORMALIZE = "normalize"  # a lone LF ends a line as CRLF would, except the DATA end
    REJECT = "reject"  # 500 for a command line, 521 for DATA


_BARE_LF = re.compile(rb"(?<!\r)\n")


# -- command lines --------------------------------------------------------------------


def _parse_path_command(argument: str, prefix: str, *, is_reverse: bool
                        ) -> tuple[Mailbox | None, dict[str, str | None]]:
    if argument[:len(prefix)].upper() != prefix:
        raise ValueError(f"expected {prefix}<address>")
    # RFC 5321 allows no space after the colon; many clients send one anyway.
    inside, rest = split_path(argument[len(prefix):].lstrip(" "))
    if rest and not rest.startswith(" "):
        raise ValueError("expected a space before parameters")
    return parse_path(inside, is_reverse=is_reverse), parse_params(rest)


def parse_mail(argument: str) -> Mail:
    address, params = _parse_path_command(argument, "FROM:", is_reverse=True)
    return Mail(address, parse_mail_params(params))


def parse_rcpt(argument: str) -> Rcpt:
    address, params = _parse_path_command(argument, "TO:", is_reverse=False)
    assert address is not None  # parse_path refuses an empty forward-path
    return Rcpt(address, parse_rcpt_params(params))


def parse_hello(argument: str, *, is_extended: bool) -> Helo | Ehlo:
    domain = argument.strip()
    if not domain or " " in domain:
        raise ValueError("expected one domain or address literal")
    return Ehlo(domain) if is_extended else Helo(domain)


def parse_auth(argument: str) -> Auth:
    parts = argument.split()
    if not 1 <= len(parts) <= 2:
        raise ValueError("expected AUTH mechanism [initial-response]")
    return Auth(parts[0].upper(), parts[1] if len(parts) == 2 else None)


_CHUNK_SIZE = re.compile(r"[0-9]{1,20}")  # RFC 3030 §2: chunk-size ::= 1*DIGIT, bounded


def parse_bdat(argument: str) -> Bdat:
    """RFC 3030 §2: `BDAT SP chunk-size [SP end-marker]`, end-marker ::= "LAST"."""
    parts = argument.split(" ")
    if not 1 <= len(parts) <= 2 or not _CHUNK_SIZE.fullmatch(parts[0]):
        raise ValueError("expected BDAT chunk-size [LAST]")
    if len(parts) == 2 and parts[1].upper() != "LAST":
        raise ValueError("expected BDAT chunk-size [LAST]")
    return Bdat(int(parts[0]), len(parts) == 2)


def _no_argument(factory: Callable[[], Command]) -> Callable[[str], Command]:
    def parse(argument: str) -> Command:
        if argument.strip():
            raise ValueError("this command takes no argument")
        return factory()
    return parse


_PARSERS: dict[str, Callable[[str], Command]] = {
    "HELO": lambda argument: parse_hello(argument, is_extended=False),
    "EHLO": lambda argument: parse_hello(argument, is_extended=True),
    "MAIL": parse_mail,
    "RCPT": parse_rcpt,
    "DATA": _no_argument(Data),
    "BDAT": parse_bdat,
    "RSET": _no_argument(Rset),
    "QUIT": _no_argument(Quit),
    "STARTTLS": _no_argument(StartTls),
    "NOOP": lambda argument: Noop(),  # RFC 5321 §4.1.1.9: a parameter is ignored
    "VRFY": Vrfy,
    "EXPN": Expn,
    "HELP": Help,
    "AUTH": parse_auth,
}
# Per-verb line limits (see the constants at the top).
_LINE_LIMITS = {"MAIL": MAX_PATH_COMMAND_LINE, "RCPT": MAX_PATH_COMMAND_LINE,
                "AUTH": MAX_AUTH_LINE}


def parse_command(line: bytes) -> Command | BadCommand | BadBdat | LineTooLong:
    """One command line without its CRLF."""
    verb = line.partition(b" ")[0].upper()
    try:
        text = line.decode("utf-8")  # RFC 6531: UTF-8 paths once SMTPUTF8 is offered
    except UnicodeDecodeError:
        return _bad(verb, BadCommand("command line is not UTF-8", BadKind.SYNTAX))
    if any(ord(char) < 32 or ord(char) == 127 for char in text):
        return _bad(verb, BadCommand("control character in command line", BadKind.SYNTAX))
    name, _, argument = text.partition(" ")
    name = name.upper()
    if len(line) + 2 > _LINE_LIMITS.get(name, MAX_COMMAND_LINE):
        return _bad(verb, LineTooLong())
    parser = _PARSERS.get(name)
    if parser is None:
        return BadCommand("command not recognized", BadKind.UNRECOGNIZED)
    try:
        return parser(argument.rstrip(" "))
    except ParameterError as error:
        return BadCommand(str(error), BadKind.PARAMETER)
    except ValueError as error:
        return _bad(verb, BadCommand(str(error), BadKind.SYNTAX))


def _bad(verb: bytes, event: BadCommand | LineTooLong) -> BadCommand | BadBdat | LineTooLong:
    """Any unparsable BDAT line is `BadBdat`: its chunk must not be read as commands."""
    if verb == b"BDAT":
        return BadBdat(event.reason if isinstance(event, BadCommand) else "line too long")
    return event


# -- the connection -------------------------------------------------------------------


class SmtpConnection:
    """Framing state for one SMTP connection (server side)."""

    def __init__(self, bare_newline: BareNewlinePolicy = BareNewlinePolicy.NORMALIZE) -> None:
        self._bare_newline = bare_newline
        self._buffer = bytearray()
        self._mode = Mode.COMMAND
        self._is_eof = False
        self._is_skipping_line = False  # inside an over-long line, dropping to its LF
        # DATA state
        self._at_line_start = True
        self._is_crlf_line_start = True  # the line before ended in CRLF (not a lone LF)
        self._data_size = 0
        self._size_limit = 0
        self._problem: SizeExceeded | BareNewline | None = None
        # BDAT state: octets of the current chunk still to read, and what to do with them
        self._chunk: Bdat | None = None
        self._chunk_remaining = 0
        self._is_discarding_chunk = False

    @property
    def mode(self) -> Mode:
        return self._mode

    @property
    def has_buffered_data(self) -> bool:
        return bool(self._buffer)

    def receive_data(self, data: bytes) -> None:
        if data:
            self._buffer += data
        else:
            self._is_eof = True

    def discard_buffered(self) -> int:
        """Drop unread bytes (after STARTTLS: RFC 3207 §4.2, never execute pipelined
        plaintext). Returns how many were dropped."""
        dropped = len(self._buffer)
        self._buffer.clear()
        return dropped

    def begin_data(self, size_limit: int) -> None:
        """Call after sending 354. `size_limit` 0 means unlimited."""
        self._mode = Mode.DATA
        # RFC 5321 §4.1.1.4: the body begins at a line start (right after DATA's CRLF)
        self._at_line_start = self._is_crlf_line_start = True
        self._data_size = 0
        self._size_limit = size_limit
        self._problem = None

    def discard_chunk(self) -> None:
        """Call on a `Bdat` the driver refuses: its octets are read and dropped, and
        `ChunkEnd` follows (RFC 3030 §2: a refused chunk is still consumed)."""
        self._is_discarding_chunk = True

    def expect_auth_response(self) -> None:
        """Call after sending a 334 challenge: the next line is a SASL response."""
        self._mode = Mode.AUTH_RESPONSE

    def next_event(self) -> Event:
        if self._mode is Mode.DATA:
            return self._next_data_event()
        if self._mode is Mode.CHUNK:
            return self._next_chunk_event()
        return self._next_line_event()

    # -- command and SASL lines ---------------------------------------------------------

    def _next_line_event(self) -> Event:
        while True:
            newline = self._buffer.find(b"\n")
            if self._is_skipping_line:
                if newline < 0:
                    self._buffer.clear()
                    return self._need_data()
                del self._buffer[:newline + 1]
                self._is_skipping_line = False
                continue
            if newline < 0:
                if len(self._buffer) > MAX_BUFFERED_LINE:
                    self._buffer.clear()
                    self._is_skipping_line = True
                    return LineTooLong()
                return self._need_data()
            line = bytes(self._buffer[:newline + 1])
            del self._buffer[:newline + 1]
            return self._line_event(line)

    def _line_event(self, line: bytes) -> Event:
        if line.endswith(b"\r\n"):
            line = line[:-2]
        elif self._bare_newline is BareNewlinePolicy.NORMALIZE:
            line = line[:-1]  # Postfix 3.9 normalize: a command line may end in a lone LF
        elif line[:4].upper() == b"BDAT" and self._mode is Mode.COMMAND:
            return BadBdat("bare <LF> received")
        else:
            return BadCommand("bare <LF> received", BadKind.BARE_NEWLINE)
        if self._mode is Mode.AUTH_RESPONSE:
            self._mode = Mode.COMMAND
            if len(line) + 2 > MAX_AUTH_LINE:
                return LineTooLong()
            return AuthResponse(line.decode("ascii", "replace"))
        command = parse_command(line)
        if isinstance(command, Bdat):
            # RFC 3030 §2: the chunk follows the CRLF at once, accepted or not.
            self._mode = Mode.CHUNK
            self._chunk, self._chunk_remaining = command, command.size
            self._is_discarding_chunk = False
        return command

    def _need_data(self) -> NeedData | ConnectionClosed:
        return ConnectionClosed() if self._is_eof else NeedData()

    # -- BDAT chunks (RFC 3030) -------------------------------------------------------------

    def _next_chunk_event(self) -> Event:
        """Exactly the announced octets, as they are; then `ChunkEnd`."""
        while self._chunk_remaining:
            if not self._buffer:
                return self._need_data()
            take = min(self._chunk_remaining, len(self._buffer))
            data = bytes(self._buffer[:take])
            del self._buffer[:take]
            self._chunk_remaining -= take
            if not self._is_discarding_chunk:
                return DataChunk(data)
        chunk, self._chunk = self._chunk, None
        assert chunk is not None  # CHUNK mode is entered with one
        self._mode = Mode.COMMAND
        self._is_discarding_chunk = False
        return ChunkEnd(chunk.size, chunk.is_last)

    # -- DATA -----------------------------------------------------------------------------

    def _next_data_event(self) -> Event:
        while True:
            event = self._data_step()
            if isinstance(event, DataChunk) and self._problem is not None:
                continue  # a refused message: consume, do not hand out
            return event

    def _data_step(self) -> Event:
        buffer = self._buffer
        if self._at_line_start and buffer[:1] == b".":
            if len(buffer) < 3 and b".\r\n".startswith(bytes(buffer)):
                return self._need_data()
            if buffer[:3] == b".\r\n" and self._is_crlf_line_start:
                del buffer[:3]
                return self._finish_data()
            # RFC 5321 §4.5.2: drop the transparency dot. After a lone LF a "." line is
            # not the end (smuggling): it is unstuffed like any line, i.e. left empty.
            del buffer[:1]
            self._at_line_start = False
        end = buffer.find(b"\n.")
        if end >= 0:
            end += 1  # up to the LF; the "." starts the next step
        elif buffer.endswith(b"\r"):
            # the CR may start "\r\n." in the next read: keep it back
            end = len(buffer) - 1
        else:
            end = len(buffer)
        if end <= 0:
            return self._need_data()
        chunk = bytes(buffer[:end])
        del buffer[:end]
        self._at_line_start = chunk.endswith(b"\n")
        self._is_crlf_line_start = chunk.endswith(b"\r\n")
        return DataChunk(self._check_chunk(chunk))

    def _check_chunk(self, chunk: bytes) -> bytes:
        """Note what is wrong with `chunk` (never ends in CR: see `_data_step`) and return
        it as handed out, lone LFs made CRLF under NORMALIZE."""
        pairs = chunk.count(b"\r\n")
        has_bare_lf = chunk.count(b"\n") != pairs
        if has_bare_lf and self._bare_newline is BareNewlinePolicy.NORMALIZE:
            has_bare_lf = False
            chunk = _BARE_LF.sub(b"\r\n", chunk)
            pairs = chunk.count(b"\r\n")
        self._data_size += len(chunk)
        if isinstance(self._problem, BareNewline):
            return chunk
        if has_bare_lf:
            self._problem = BareNewline("LF")
        elif chunk.count(b"\r") != pairs:
            self._problem = BareNewline("CR")
        elif self._size_limit and self._data_size > self._size_limit:
            self._problem = SizeExceeded(self._data_size)
        return chunk

    def _finish_data(self) -> DataEnd | SizeExceeded | BareNewline:
        self._mode = Mode.COMMAND
        problem, self._problem = self._problem, None
        if isinstance(problem, SizeExceeded):
            return SizeExceeded(self._data_size)
        return problem or DataEnd(self._data_size)
