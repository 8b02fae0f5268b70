"""ManageSieve syntax (RFC 5804 §4), sans-IO: bytes in, commands out; responses rendered.

Owns framing a command line with its arguments — atoms, quoted strings and literals
(`{N+}` non-synchronizing, and `{N}`, which clients such as sieve-connect also send and
which we read without a continuation, as Dovecot does) — and rendering OK/NO/BYE with
response codes, strings (quoted when short and plain, a literal otherwise) and the
capability list.

Invariants: a command line is at most MAX_LINE bytes and a literal at most the
connection's `max_literal` bytes (the script size limit); a command has at most
MAX_ARGUMENTS arguments; what exceeds a limit is a `SyntaxError_` event, and the bytes
of an oversized literal are skipped rather than buffered, so the connection stays in sync.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from postroom.security.limits import Refusal

MAX_LINE = 8192
MAX_ARGUMENTS = 4
_LITERAL = re.compile(rb"\{(\d{1,10})(\+?)\}$")


@dataclass(frozen=True, slots=True)
class Command:
    name: str  # upper-cased
    arguments: tuple[str | int, ...]  # strings (decoded UTF-8) and numbers


@dataclass(frozen=True, slots=True)
class SyntaxError_:
    message: str


@dataclass(frozen=True, slots=True)
class SaslLine:
    """A client's SASL response (RFC 5804 §2.1: a string, quoted or literal; "*" or
    `"*"` cancels)."""

    text: str


Event = Command | SyntaxError_ | SaslLine


class ManageSieveConnection:
    """Feed received bytes with `receive`; take commands with `next_event` (None: more
    bytes needed)."""

    def __init__(self, max_literal: int) -> None:
        self.max_literal = max_literal
        self._buffer = bytearray()
        self._parts: list[bytes | str] = []  # the command so far: line pieces, literals
        self._skip = 0  # bytes of an oversized literal still to discard
        self._skip_line = False  # then the rest of that command's line too
        self._is_sasl = False  # the next line is a SASL response, not a command

    def expect_sasl(self) -> None:
        self._is_sasl = True

    def receive(self, data: bytes) -> None:
        self._buffer += data

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def next_event(self) -> Event | None:
        while True:
            if self._skip:
                taken = min(self._skip, len(self._buffer))
                del self._buffer[:taken]
                self._skip -= taken
                if self._skip:
                    return None
            end = self._buffer.find(b"\r\n")
            if self._skip_line:
                if end < 0:
                    if len(self._buffer) > MAX_LINE:
                        self._buffer.clear()
                    return None
                del self._buffer[: end + 2]
                self._skip_line = False
                continue
            if end < 0:
                if len(self._buffer) > MAX_LINE:
                    self._buffer.clear()
                    self._parts = []
                    return SyntaxError_("line too long")
                return None
            line = bytes(self._buffer[:end])
            literal = _LITERAL.search(line)
            if literal is None:
                del self._buffer[: end + 2]
                self._parts.append(line)
                parts, self._parts = self._parts, []
                if self._is_sasl:
                    self._is_sasl = False
                    return _sasl_line(parts)
                return _parse(parts)
            size = int(literal.group(1))
            if size > self.max_literal:
                del self._buffer[: end + 2]
                self._parts = []
                self._skip = size
                self._skip_line = True
                return SyntaxError_(f"literal of {size} bytes is over the limit of "
                                    f"{self.max_literal}")  # fmt: skip
            if len(self._buffer) < end + 2 + size:
                return None
            start = end + 2
            self._parts.append(line[: literal.start()])
            self._parts.append(self._buffer[start:start + size].decode("utf-8", "replace"))
            del self._buffer[: start + size]


def _sasl_line(parts: list[bytes | str]) -> Event:
    literals = [part for part in parts if isinstance(part, str)]
    if literals:
        return SaslLine(literals[0].strip())
    text = b"".join(part for part in parts if isinstance(part, bytes)).decode(
        "ascii", "replace").strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1]
    return SaslLine(text)


def _parse(parts: list[bytes | str]) -> Event:
    """Arguments from the line pieces (bytes) and literals (str) in order."""
    tokens: list[str | int] = []
    for part in parts:
        if isinstance(part, str):
            tokens.append(part)
            continue
        try:
            tokens += _tokens(part.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as error:
            return SyntaxError_(str(error) or "bad syntax")
    if not tokens or not isinstance(tokens[0], str) or not re.fullmatch(r"[A-Za-z]+",
                                                                         tokens[0]):
        return SyntaxError_("expected a command name")
    name = tokens[0].upper()
    if len(tokens) - 1 > MAX_ARGUMENTS:
        return SyntaxError_("too many arguments")
    return Command(name, tuple(tokens[1:]))


_TOKEN = re.compile(r'\s*(?:"((?:[^"\\\r\n]|\\["\\])*)"|(\d+)(?![\w])|([A-Za-z][\w-]*))')


def _tokens(text: str) -> list[str | int]:
    found: list[str | int] = []
    position = 0
    text = text.rstrip(" ")
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise ValueError(f"unexpected {text[position:position + 10]!r}")
        quoted, number, atom = match.groups()
        if quoted is not None:
            found.append(re.sub(r'\\(["\\])', r"\1", quoted))
        elif number is not None:
            found.append(int(number))
        elif atom is not None:
            found.append(atom)
        position = match.end()
    return found


# -- rendering ---------------------------------------------------------------------------
def render_string(text: str) -> bytes:
    """A quoted string when short and plain, else a literal (RFC 5804 §4)."""
    data = text.encode("utf-8")
    if len(data) < 1024 and not re.search(rb'["\\\r\n\0]', data):
        return b'"' + data + b'"'
    return b"{%d}\r\n" % len(data) + data


def render_response(status: str, text: str = "", code: str = "") -> bytes:
    """`OK` / `NO` / `BYE` [(code)] [text] CRLF."""
    out = status.encode()
    if code:
        out += b" (" + code.encode() + b")"
    if text:
        out += b" " + render_string(text)
    return out + b"\r\n"


def render_capabilities(items: list[tuple[str, str | None]]) -> bytes:
    lines = b""
    for name, value in items:
        lines += render_string(name)
        if value is not None:
            lines += b" " + render_string(value)
        lines += b"\r\n"
    return lines


def render_refusal(refusal: Refusal, hostname: str) -> bytes:
    """Instead of the greeting: `BYE (TRYLATER) "why"` (RFC 5804 §1.3); a
    `RefusalRenderer` (security/limits.py)."""
    return render_response("BYE", str(refusal.value), "TRYLATER")
