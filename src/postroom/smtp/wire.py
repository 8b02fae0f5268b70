"""Sans-IO SMTP server protocol core: bytes in, command and data events out.

Owns the SMTP wire grammar (RFC 5321): command-line framing and limits, verbs and their
arguments, reverse-/forward-paths (§4.1.2), ESMTP parameters (SIZE, BODY, SMTPUTF8, AUTH,
and the DSN parameters RET/ENVID/NOTIFY/ORCPT), and DATA framing with dot-unstuffing.

Shape (as h11): `receive_data(bytes)` (b"" = EOF), then `next_event()` until `NeedData`.
The driver decides what a command means; it switches the parser into DATA mode with
`begin_data()` only after it has sent 354, and into SASL mode with `expect_auth_response()`
after a 334, so a refused DATA or AUTH never turns later lines into message text.

Invariants:
- DATA is streamed: `DataChunk`s are dot-unstuffed slices, never the whole message.
- End of data is ONLY `<CRLF>.<CRLF>` (RFC 5321 §4.1.1.4). A bare LF or bare CR inside
  DATA taints the message (SMTP smuggling, 2023): the parser keeps consuming to the real
  end marker and then reports `BareNewline` instead of `DataEnd`, as Postfix's
  `smtpd_forbid_bare_newline=yes` refuses such input; nothing is ever delivered from it.
- The size limit is enforced while streaming: past it, chunks are dropped, the parser
  keeps consuming to the end marker and reports `SizeExceeded`.
- Every buffer is bounded: command lines by `MAX_BUFFERED_LINE`, DATA by streaming.
This module imports nothing from asyncio, ssl, socket or postroom.store.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass, field

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
class Mailbox:
    """A path's mailbox as sent. `domain` is "" only for the bare `<Postmaster>` RCPT."""

    local: str
    domain: str
    is_quoted: bool = False  # the local part was a Quoted-string
    is_domain_literal: bool = False  # `[192.0.2.1]` / `[IPv6:…]`
    route: tuple[str, ...] = ()  # source route (RFC 5321 §4.1.1.3: accepted, ignored)

    @property
    def has_route(self) -> bool:
        return bool(self.route)

    def __str__(self) -> str:
        local = render_local_part(self.local) if self.is_quoted else self.local
        return f"{local}@{self.domain}" if self.domain else local


@dataclass(frozen=True, slots=True)
class MailParams:
    size: int | None = None  # RFC 1870
    body: str | None = None  # RFC 6152: "7BIT" or "8BITMIME"
    is_smtputf8: bool = False  # RFC 6531
    auth: str | None = None  # RFC 4954 §5, xtext-decoded; "" for AUTH=<>
    ret: str | None = None  # RFC 3461 §4.3: "FULL" or "HDRS"
    envid: str | None = None  # RFC 3461 §4.4: xtext, case kept


@dataclass(frozen=True, slots=True)
class RcptParams:
    notify: tuple[str, ...] = ()  # RFC 3461 §4.1: ("NEVER",) or SUCCESS/FAILURE/DELAY
    orcpt: str | None = None  # RFC 3461 §4.2: "addr-type;xtext" as sent


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
class SizeExceeded:
    size: int


@dataclass(frozen=True, slots=True)
class BareNewline:
    character: str  # "LF" or "CR"


Command = (Helo | Ehlo | Mail | Rcpt | Data | Rset | Noop | Quit | Vrfy | Expn | Help
           | StartTls | Auth)
Event = (Command | AuthResponse | DataChunk | DataEnd | SizeExceeded | BareNewline | NeedData
         | ConnectionClosed | LineTooLong | BadCommand)


class Mode(enum.Enum):
    COMMAND = "command"
    AUTH_RESPONSE = "auth-response"
    DATA = "data"


# -- path grammar (RFC 5321 §4.1.2, RFC 6531 §3.3 for UTF-8) -------------------------

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\x80-\U0010ffff]"
_DOT_STRING = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*")
_QUOTED_STRING = re.compile(r'"((?:[\x20\x21\x23-\x5b\x5d-\x7e\x80-\U0010ffff]|\\[\x20-\x7e])*)"')
_LET_DIG = r"[A-Za-z0-9\x80-\U0010ffff]"  # U-labels allowed (RFC 6531 §3.3)
_SUB_DOMAIN = rf"{_LET_DIG}(?:[A-Za-z0-9\-\x80-\U0010ffff]*{_LET_DIG})?"
_DOMAIN = re.compile(rf"{_SUB_DOMAIN}(?:\.{_SUB_DOMAIN})*")
_ADDRESS_LITERAL = re.compile(r"\[(?:[0-9.]+|IPv6:[0-9A-Fa-f:.]+|[A-Za-z0-9-]*[A-Za-z0-9]:"
                              r"[\x21-\x5a\x5e-\x7e]+)\]")
_ESMTP_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
# RFC 5321 §4.1.2 esmtp-value: any CHAR except "=", SP and controls (UTF-8 allowed, RFC 6531).
_ESMTP_VALUE = re.compile(r"[\x21-\x3c\x3e-\x7e\x80-\U0010ffff]+")
_XTEXT = re.compile(r"(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2})*")


def render_local_part(local: str) -> str:
    """A local part as it must appear in a path: quoted unless it is a Dot-string."""
    if _DOT_STRING.fullmatch(local):
        return local
    escaped = local.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def decode_xtext(text: str) -> str:
    """RFC 3461 §4: `+XX` hex escapes."""
    return re.sub(r"\+([0-9A-F]{2})", lambda m: chr(int(m.group(1), 16)), text)


def parse_mailbox(text: str) -> Mailbox:
    """`local@domain` (no brackets). Raises ValueError naming the problem."""
    quoted = _QUOTED_STRING.match(text)
    if quoted:
        local = re.sub(r"\\(.)", r"\1", quoted.group(1))
        rest = text[quoted.end():]
    else:
        local, at, domain_part = text.rpartition("@")
        if not at:
            raise ValueError("address has no domain")
        if not _DOT_STRING.fullmatch(local):
            raise ValueError("invalid local part")
        rest = "@" + domain_part
    if not rest.startswith("@"):
        raise ValueError("address has no domain")
    domain = rest[1:]
    if _ADDRESS_LITERAL.fullmatch(domain):
        return Mailbox(local, domain, is_quoted=bool(quoted), is_domain_literal=True)
    if not _DOMAIN.fullmatch(domain) or len(domain) > 255:
        raise ValueError("invalid domain")
    return Mailbox(local, domain, is_quoted=bool(quoted))


def _split_path(argument: str) -> tuple[str, str]:
    """Split `<path> params` honouring quoted strings; returns (inside, rest)."""
    if not argument.startswith("<"):
        # Not RFC 5321, but common (Postfix accepts it unless strict_rfc821_envelopes).
        inside, _, rest = argument.partition(" ")
        return inside, rest
    index, in_quotes = 1, False
    while index < len(argument):
        char = argument[index]
        if char == "\\" and in_quotes:
            index += 2
            continue
        if char == '"':
            in_quotes = not in_quotes
        elif char == ">" and not in_quotes:
            return argument[1:index], argument[index + 1:]
        index += 1
    raise ValueError("path has no closing >")


def parse_path(inside: str, *, is_reverse: bool) -> Mailbox | None:
    """A path without its brackets: `""` (null, reverse only), `[adl:]mailbox`."""
    if inside == "":
        if is_reverse:
            return None
        raise ValueError("empty forward-path")
    route: tuple[str, ...] = ()
    if inside.startswith("@"):
        # RFC 5321 §4.1.2 A-d-l; §4.1.1.3: accept and ignore source routes.
        adl, colon, inside = inside.partition(":")
        if not colon:
            raise ValueError("source route without ':'")
        hops = tuple(hop.removeprefix("@") for hop in adl.split(","))
        if not all(hop and _DOMAIN.fullmatch(hop) for hop in hops):
            raise ValueError("invalid source route")
        route = hops
    if not is_reverse and inside.lower() == "postmaster":
        return Mailbox("postmaster", "")  # RFC 5321 §4.1.1.3 `RCPT TO:<Postmaster>`
    mailbox = parse_mailbox(inside)
    if len(mailbox.local.encode()) > 64 and not mailbox.is_quoted:
        raise ValueError("local part longer than 64 octets")  # RFC 5321 §4.5.3.1.1
    return Mailbox(mailbox.local, mailbox.domain, mailbox.is_quoted,
                   mailbox.is_domain_literal, route)


def parse_params(text: str) -> dict[str, str | None]:
    """RFC 5321 §4.1.2 Mail-parameters: `KEY[=value]` separated by spaces."""
    params: dict[str, str | None] = {}
    for item in text.split():
        key, equals, value = item.partition("=")
        if not _ESMTP_KEYWORD.fullmatch(key) or (equals and not _ESMTP_VALUE.fullmatch(value)):
            raise ValueError(f"invalid parameter {item}")
        upper = key.upper()
        if upper in params:
            raise ValueError(f"duplicate parameter {upper}")
        params[upper] = value if equals else None
    return params


class ParameterError(ValueError):
    """An unknown parameter (555) rather than a malformed one (501)."""


def _xtext(value: str | None, name: str, limit: int) -> str:
    if value is None or not _XTEXT.fullmatch(value) or len(value) > limit:
        raise ValueError(f"invalid {name} value")
    return value


def parse_mail_params(params: dict[str, str | None]) -> MailParams:
    values: dict[str, object] = {}
    for key, value in params.items():
        if key == "SIZE":  # RFC 1870 §3: size-value ::= 1*20DIGIT
            if value is None or not value.isdigit() or len(value) > 20:
                raise ValueError("invalid SIZE value")
            values["size"] = int(value)
        elif key == "BODY":  # RFC 6152 §2 (BINARYMIME needs CHUNKING, not offered)
            if value is None or value.upper() not in {"7BIT", "8BITMIME"}:
                raise ValueError("invalid BODY value")
            values["body"] = value.upper()
        elif key == "SMTPUTF8":  # RFC 6531 §3.4: no value
            if value is not None:
                raise ValueError("SMTPUTF8 takes no value")
            values["is_smtputf8"] = True
        elif key == "AUTH":  # RFC 4954 §5: AUTH=<> or AUTH=xtext
            values["auth"] = "" if value == "<>" else decode_xtext(_xtext(value, "AUTH", 500))
        elif key == "RET":
            if value is None or value.upper() not in {"FULL", "HDRS"}:
                raise ValueError("invalid RET value")
            values["ret"] = value.upper()
        elif key == "ENVID":  # keep the case: it is echoed back in DSNs
            values["envid"] = _xtext(value, "ENVID", 100)
        else:
            raise ParameterError(f"parameter {key} not recognized")
    return MailParams(**values)  # type: ignore[arg-type]


def parse_rcpt_params(params: dict[str, str | None]) -> RcptParams:
    notify: tuple[str, ...] = ()
    orcpt: str | None = None
    for key, value in params.items():
        if key == "NOTIFY":  # RFC 3461 §4.1
            items = tuple((value or "").upper().split(","))
            allowed = {"SUCCESS", "FAILURE", "DELAY"}
            is_valid_list = set(items) <= allowed and len(set(items)) == len(items)
            if items != ("NEVER",) and not is_valid_list:
                raise ValueError("invalid NOTIFY value")
            notify = items
        elif key == "ORCPT":  # RFC 3461 §4.2: addr-type ";" xtext
            addr_type, semicolon, address = (value or "").partition(";")
            if not semicolon or not _ESMTP_KEYWORD.fullmatch(addr_type):
                raise ValueError("invalid ORCPT value")
            orcpt = f"{addr_type};{_xtext(address, 'ORCPT', 500)}"
        else:
            raise ParameterError(f"parameter {key} not recognized")
    return RcptParams(notify, orcpt)


# -- command lines --------------------------------------------------------------------


def _parse_path_command(argument: str, prefix: str, *, is_reverse: bool
                        ) -> tuple[Mailbox | None, dict[str, str | None]]:
    if argument[:len(prefix)].upper() != prefix:
        raise ValueError(f"expected {prefix}<address>")
    # RFC 5321 allows no space after the colon; many clients send one anyway.
    inside, rest = _split_path(argument[len(prefix):].lstrip(" "))
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


def parse_command(line: bytes) -> Command | BadCommand | LineTooLong:
    """One command line without its CRLF."""
    try:
        text = line.decode("utf-8")  # RFC 6531: UTF-8 paths once SMTPUTF8 is offered
    except UnicodeDecodeError:
        return BadCommand("command line is not UTF-8", BadKind.SYNTAX)
    if any(ord(char) < 32 or ord(char) == 127 for char in text):
        return BadCommand("control character in command line", BadKind.SYNTAX)
    verb, _, argument = text.partition(" ")
    verb = verb.upper()
    if len(line) + 2 > _LINE_LIMITS.get(verb, MAX_COMMAND_LINE):
        return LineTooLong()
    parser = _PARSERS.get(verb)
    if parser is None:
        return BadCommand("command not recognized", BadKind.UNRECOGNIZED)
    try:
        return parser(argument.rstrip(" "))
    except ParameterError as error:
        return BadCommand(str(error), BadKind.PARAMETER)
    except ValueError as error:
        return BadCommand(str(error), BadKind.SYNTAX)


# -- the connection -------------------------------------------------------------------


class SmtpConnection:
    """Framing state for one SMTP connection (server side)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._mode = Mode.COMMAND
        self._is_eof = False
        self._is_skipping_line = False  # inside an over-long line, dropping to its LF
        # DATA state
        self._at_line_start = True
        self._data_size = 0
        self._size_limit = 0
        self._problem: SizeExceeded | BareNewline | None = None

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
        self._at_line_start = True  # RFC 5321 §4.1.1.4: the body begins at a line start
        self._data_size = 0
        self._size_limit = size_limit
        self._problem = None

    def expect_auth_response(self) -> None:
        """Call after sending a 334 challenge: the next line is a SASL response."""
        self._mode = Mode.AUTH_RESPONSE

    def next_event(self) -> Event:
        if self._mode is Mode.DATA:
            return self._next_data_event()
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
        if not line.endswith(b"\r\n"):
            return BadCommand("bare <LF> received", BadKind.BARE_NEWLINE)
        line = line[:-2]
        if self._mode is Mode.AUTH_RESPONSE:
            self._mode = Mode.COMMAND
            if len(line) + 2 > MAX_AUTH_LINE:
                return LineTooLong()
            return AuthResponse(line.decode("ascii", "replace"))
        return parse_command(line)

    def _need_data(self) -> NeedData | ConnectionClosed:
        return ConnectionClosed() if self._is_eof else NeedData()

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
            if buffer[:3] == b".\r\n":
                del buffer[:3]
                return self._finish_data()
            del buffer[:1]  # RFC 5321 §4.5.2: drop the transparency dot
        end = buffer.find(b"\r\n.")
        if end >= 0:
            end, at_line_start = end + 2, True
        elif buffer.endswith(b"\r"):
            # the CR may start "\r\n." in the next read: keep it back
            end, at_line_start = len(buffer) - 1, False
        else:
            end, at_line_start = len(buffer), buffer.endswith(b"\r\n")
        if end <= 0:
            return self._need_data()
        chunk = bytes(buffer[:end])
        del buffer[:end]
        self._at_line_start = at_line_start
        self._check_chunk(chunk)
        return DataChunk(chunk)

    def _check_chunk(self, chunk: bytes) -> None:
        self._data_size += len(chunk)
        if isinstance(self._problem, BareNewline):
            return
        pairs = chunk.count(b"\r\n")
        if chunk.count(b"\n") != pairs:
            self._problem = BareNewline("LF")
        elif chunk.count(b"\r") != pairs:
            self._problem = BareNewline("CR")
        elif self._size_limit and self._data_size > self._size_limit:
            self._problem = SizeExceeded(self._data_size)

    def _finish_data(self) -> DataEnd | SizeExceeded | BareNewline:
        self._mode = Mode.COMMAND
        problem, self._problem = self._problem, None
        if isinstance(problem, SizeExceeded):
            return SizeExceeded(self._data_size)
        return problem or DataEnd(self._data_size)
