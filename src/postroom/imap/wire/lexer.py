"""Token reader over one complete, framed IMAP command (RFC 9051 §4 and §9).

Owns: `Lexer`, a cursor over the bytes of one command as `ImapConnection` framed it (the
command line, any literal markers with their CRLF and payload bytes, and continuation
text, WITHOUT the final CRLF), and `ParseError`.

Invariants:
- The lexer never reads past its buffer: every primitive checks bounds and raises
  `ParseError` (a `BadSyntax`) on malformed input, never `IndexError`/`ValueError`.
- Literal payloads are sliced, not copied byte by byte; the framer guarantees that the
  payload announced by `{n}` is present, but the lexer re-checks it.
- Primitives return `bytes` for strings; decoding to `str` is the grammar's decision
  (`text()` decodes strict UTF-8, RFC 9051 §4.3 / RFC 6855).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from postroom.errors import BadSyntax

T = TypeVar("T")

MAX_NUMBER = 2**32 - 1  # RFC 9051 §9 number
MAX_NUMBER64 = 2**63 - 1  # RFC 9051 §9 number64 / RFC 7162 mod-sequence-value

# RFC 9051 §9: atom-specials = "(" / ")" / "{" / SP / CTL / list-wildcards /
# quoted-specials / resp-specials. CHAR excludes NUL and 8-bit octets.
_ATOM_SPECIALS = frozenset(b'(){ %*"\\]') | frozenset(range(0x00, 0x20)) | {0x7F}
ATOM_CHARS = frozenset(range(0x01, 0x80)) - _ATOM_SPECIALS
ASTRING_CHARS = ATOM_CHARS | {ord("]")}
# RFC 9051 §9 list-char = ATOM-CHAR / list-wildcards / resp-specials
LIST_CHARS = ASTRING_CHARS | {ord("%"), ord("*")}
DIGITS = frozenset(b"0123456789")


class ParseError(BadSyntax):
    """The command does not parse; `tag` is known when the tag itself was readable."""

    def __init__(self, message: str, tag: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.tag = tag


def decode_text(raw: bytes) -> str:
    """Decode string bytes as strict UTF-8 (RFC 9051 §4.3); bad bytes are a syntax error."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError("string is not valid UTF-8") from exc


class Lexer:
    """A cursor over one framed command. See the module docstring for the buffer shape."""

    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes, pos: int = 0) -> None:
        self.buf = buf
        self.pos = pos

    # -- basic cursor -----------------------------------------------------------------
    def peek(self) -> int | None:
        return self.buf[self.pos] if self.pos < len(self.buf) else None

    def at_end(self) -> bool:
        return self.pos >= len(self.buf)

    def expect_end(self) -> None:
        if not self.at_end():
            raise ParseError("unexpected characters after the command")

    def expect(self, token: bytes) -> None:
        if self.buf[self.pos : self.pos + len(token)] != token:
            raise ParseError(f"expected {token.decode('ascii')!r}")
        self.pos += len(token)

    def expect_sp(self) -> None:
        self.expect(b" ")

    def skip(self, token: bytes) -> bool:
        """Consume `token` (case-insensitively) if it is next; report whether it was."""
        end = self.pos + len(token)
        if self.buf[self.pos : end].upper() == token.upper():
            self.pos = end
            return True
        return False

    def skip_word(self, word: bytes) -> bool:
        """Consume `word` only when it is a whole atom (followed by a non-atom byte)."""
        end = self.pos + len(word)
        if self.buf[self.pos : end].upper() != word.upper():
            return False
        if end < len(self.buf) and self.buf[end] in ATOM_CHARS:
            return False
        self.pos = end
        return True

    def _take_while(self, allowed: frozenset[int]) -> bytes:
        start = self.pos
        buf = self.buf
        while self.pos < len(buf) and buf[self.pos] in allowed:
            self.pos += 1
        return buf[start : self.pos]

    # -- atoms and numbers ----------------------------------------------------------------
    def read_atom(self, allowed: frozenset[int] = ATOM_CHARS) -> str:
        raw = self._take_while(allowed)
        if not raw:
            raise ParseError("expected an atom")
        return raw.decode("ascii")

    def read_number(self, maximum: int = MAX_NUMBER) -> int:
        raw = self._take_while(DIGITS)
        if not raw or len(raw) > 20:
            raise ParseError("expected a number")
        value = int(raw)
        if value > maximum:
            raise ParseError("number out of range")
        return value

    def read_nz_number(self, maximum: int = MAX_NUMBER) -> int:
        value = self.read_number(maximum)
        if value == 0:
            raise ParseError("expected a non-zero number")
        return value

    # -- strings --------------------------------------------------------------------------
    def read_quoted(self) -> bytes:
        """RFC 9051 §4.3: DQUOTE *QUOTED-CHAR DQUOTE with backslash escapes for \\ and "."""
        self.expect(b'"')
        out = bytearray()
        buf = self.buf
        while True:
            if self.pos >= len(buf):
                raise ParseError("unterminated quoted string")
            byte = buf[self.pos]
            self.pos += 1
            if byte == 0x22:
                return bytes(out)
            if byte == 0x5C:
                if self.pos >= len(buf) or buf[self.pos] not in b'"\\':
                    raise ParseError("bad escape in quoted string")
                byte = buf[self.pos]
                self.pos += 1
            elif byte in (0x00, 0x0A, 0x0D):
                raise ParseError("CR, LF or NUL in quoted string")
            out.append(byte)

    def read_literal(self, allow_literal8: bool = False) -> tuple[bytes, bool]:
        """Read `{n}`/`{n+}` (RFC 9051 §4.3, RFC 7888) or `~{n}` (RFC 3516); return
        (payload, is_literal8)."""
        is_literal8 = self.skip(b"~")
        if is_literal8 and not allow_literal8:
            raise ParseError("literal8 not allowed here")
        self.expect(b"{")
        size = self.read_number()
        self.skip(b"+")
        self.expect(b"}")
        if not self.skip(b"\r\n") and not self.skip(b"\n"):
            raise ParseError("literal marker must end the line")
        end = self.pos + size
        if end > len(self.buf):
            raise ParseError("literal shorter than announced")
        payload = self.buf[self.pos : end]
        self.pos = end
        if not is_literal8 and 0 in payload:
            raise ParseError("NUL in literal; use literal8")  # RFC 9051 §4.3
        return payload, is_literal8

    def read_string(self) -> bytes:
        byte = self.peek()
        if byte == 0x22:
            return self.read_quoted()
        if byte == 0x7B:
            return self.read_literal()[0]
        raise ParseError("expected a string")

    def read_astring(self) -> bytes:
        byte = self.peek()
        if byte in (0x22, 0x7B):
            return self.read_string()
        return self.read_atom(ASTRING_CHARS).encode("ascii")

    def read_astring_text(self) -> str:
        return decode_text(self.read_astring())

    def read_nstring(self) -> bytes | None:
        if self.skip_word(b"NIL"):
            return None
        return self.read_string()

    # -- lists ------------------------------------------------------------------------------
    def read_list(self, item: Callable[[], T], *, allow_empty: bool = True) -> list[T]:
        """Read "(" item *(SP item) ")" with `item` reading one element."""
        self.expect(b"(")
        items: list[T] = []
        if self.skip(b")"):
            if not allow_empty:
                raise ParseError("empty list not allowed")
            return items
        while True:
            items.append(item())
            if self.skip(b")"):
                return items
            self.expect_sp()

    def read_one_or_list(self, item: Callable[[], T]) -> list[T]:
        """Either a parenthesised non-empty list or a single item (RFC 5258 patterns, etc.)."""
        if self.peek() == 0x28:
            return self.read_list(item, allow_empty=False)
        return [item()]
