"""FETCH attribute grammar (RFC 9051 §6.4.5, RFC 3501 §6.4.5, RFC 3516 BINARY, RFC 7162 MODSEQ,
RFC 8970 PREVIEW, RFC 8514 SAVEDATE).

Owns: the `FetchAttribute` node types, `Section`, `Partial` and
`parse_fetch_attributes(lx)` (one attribute, a macro, or a parenthesised list).

Invariants:
- Macros expand at parse time: ALL = FLAGS INTERNALDATE RFC822.SIZE ENVELOPE,
  FAST = FLAGS INTERNALDATE RFC822.SIZE, FULL = ALL + BODY (RFC 9051 §6.4.5).
- `response_name()` is the exact item name to echo in the FETCH response: BODY.PEEK and
  BINARY.PEEK answer without ".PEEK", and a partial answers with its origin octet only,
  e.g. `BODY[HEADER.FIELDS (SUBJECT)]<0>` (RFC 9051 §7.5.2).
- `sets_seen` is True for the items that implicitly set \\Seen (RFC 9051 §6.4.5):
  BODY[...] and BINARY[...] without .PEEK, and rev1 RFC822 / RFC822.TEXT.
"""

from __future__ import annotations

from dataclasses import dataclass

from postroom.imap.wire.lexer import MAX_NUMBER64, Lexer, ParseError

# RFC 9051 §9 fetch-att names without a section (RFC822* are RFC 3501 forms).
SIMPLE_ATTRIBUTES = frozenset(
    {
        "ENVELOPE", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "BODY", "BODYSTRUCTURE", "UID",
        "MODSEQ", "RFC822", "RFC822.HEADER", "RFC822.TEXT", "EMAILID", "THREADID", "SAVEDATE",
        "PREVIEW",
    }
)
_MACROS = {
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
_NAME_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.")
_MSGTEXT = ("HEADER.FIELDS.NOT", "HEADER.FIELDS", "HEADER", "TEXT", "MIME")


@dataclass(frozen=True, slots=True)
class FetchAttribute:
    """Base of every fetch item."""

    def response_name(self) -> str:
        raise TypeError("abstract fetch attribute")

    @property
    def sets_seen(self) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class SimpleAttribute(FetchAttribute):
    """A section-less item such as FLAGS, UID, ENVELOPE, BODYSTRUCTURE, RFC822.SIZE."""

    name: str

    def response_name(self) -> str:
        return self.name

    @property
    def sets_seen(self) -> bool:
        return self.name in ("RFC822", "RFC822.TEXT")


@dataclass(frozen=True, slots=True)
class Partial:
    """`<offset.length>`: `length` octets starting at `offset` (RFC 9051 §6.4.5)."""

    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class Section:
    """section-spec: `part` (1.2.3; () = whole message) then an optional text specifier:
    HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT (with `fields`), TEXT or MIME."""

    part: tuple[int, ...] = ()
    text: str | None = None
    fields: tuple[str, ...] = ()

    def render(self) -> str:
        pieces = [str(number) for number in self.part]
        if self.text:
            pieces.append(self.text)
        spec = ".".join(pieces)
        if self.fields:
            spec += " (" + " ".join(_render_field(field) for field in self.fields) + ")"
        return spec


def _render_field(field: str) -> str:
    if field and all(ch.isalnum() or ch in "-_" for ch in field):
        return field
    return '"' + field.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _render_partial(partial: Partial | None) -> str:
    return "" if partial is None else f"<{partial.offset}>"


@dataclass(frozen=True, slots=True)
class BodySection(FetchAttribute):
    """BODY[section]<partial> and BODY.PEEK[section]<partial>."""

    section: Section
    partial: Partial | None = None
    is_peek: bool = False

    def response_name(self) -> str:
        return f"BODY[{self.section.render()}]{_render_partial(self.partial)}"

    @property
    def sets_seen(self) -> bool:
        return not self.is_peek


@dataclass(frozen=True, slots=True)
class BinarySection(FetchAttribute):
    """BINARY[part]<partial> / BINARY.PEEK[...] (RFC 3516 §4.1, RFC 9051 §6.4.5)."""

    part: tuple[int, ...] = ()
    partial: Partial | None = None
    is_peek: bool = False

    def response_name(self) -> str:
        part = ".".join(str(number) for number in self.part)
        return f"BINARY[{part}]{_render_partial(self.partial)}"

    @property
    def sets_seen(self) -> bool:
        return not self.is_peek


@dataclass(frozen=True, slots=True)
class BinarySize(FetchAttribute):
    """BINARY.SIZE[part]: decoded size of a part (RFC 3516 §4.2)."""

    part: tuple[int, ...] = ()

    def response_name(self) -> str:
        return f"BINARY.SIZE[{'.'.join(str(number) for number in self.part)}]"


def _read_part(lx: Lexer) -> tuple[int, ...]:
    """section-part = nz-number *("." nz-number); stops before ".TEXT" etc."""
    numbers: list[int] = []
    while lx.peek() is not None and 0x30 <= (lx.peek() or 0) <= 0x39:
        numbers.append(lx.read_nz_number())
        byte = lx.peek()
        next_byte = lx.buf[lx.pos + 1] if lx.pos + 1 < len(lx.buf) else None
        if byte == 0x2E and next_byte is not None and 0x30 <= next_byte <= 0x39:
            lx.pos += 1
            continue
        break
    return tuple(numbers)


def _read_section(lx: Lexer) -> Section:
    lx.expect(b"[")
    part = _read_part(lx)
    if part and not lx.skip(b"."):
        lx.expect(b"]")
        return Section(part)
    text = next((name for name in _MSGTEXT if lx.skip(name.encode("ascii"))), None)
    if text == "MIME" and not part:
        raise ParseError("MIME needs a part number")  # RFC 9051 §6.4.5
    if part and text is None:
        raise ParseError("bad section text")
    fields: tuple[str, ...] = ()
    if text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        lx.expect_sp()
        fields = tuple(lx.read_list(lambda: lx.read_astring_text(), allow_empty=False))
    lx.expect(b"]")
    return Section(part, text, fields)


def parse_section_spec(text: str) -> Section:
    """A section-spec without its brackets ("1.2", "HEADER", "1.MIME"), as IMAP URLs
    carry it (RFC 5092 §6 isection); ParseError when it is not one."""
    lx = Lexer(b"[" + text.encode("utf-8") + b"]")
    section = _read_section(lx)
    lx.expect_end()
    return section


def _read_binary_part(lx: Lexer) -> tuple[int, ...]:
    lx.expect(b"[")
    part = _read_part(lx)
    lx.expect(b"]")
    return part


def _read_partial(lx: Lexer) -> Partial | None:
    """partial = "<" number64 "." nz-number64 ">"."""
    if not lx.skip(b"<"):
        return None
    offset = lx.read_number(MAX_NUMBER64)
    lx.expect(b".")
    length = lx.read_nz_number(MAX_NUMBER64)
    lx.expect(b">")
    return Partial(offset, length)


def _read_name(lx: Lexer) -> str:
    start = lx.pos
    while lx.pos < len(lx.buf) and lx.buf[lx.pos] in _NAME_CHARS:
        lx.pos += 1
    if lx.pos == start:
        raise ParseError("expected a fetch attribute")
    return lx.buf[start : lx.pos].decode("ascii").upper()


def _skip_preview_modifiers(lx: Lexer) -> None:
    """RFC 8970 §4: "PREVIEW" [SP "(" preview-mod *(SP preview-mod) ")"], preview-mod =
    "LAZY". LAZY lets the server answer NIL when a preview is costly; ours is computed on
    demand, so it changes nothing. A "(" not starting "LAZY" belongs to the FETCH
    modifiers (CHANGEDSINCE…) and is left alone."""
    start = lx.pos
    if not lx.skip(b" (") or not lx.skip_word(b"LAZY"):
        lx.pos = start
        return
    while lx.skip(b" "):
        if not lx.skip_word(b"LAZY"):
            raise ParseError("unknown PREVIEW modifier")
    lx.expect(b")")


def parse_fetch_attribute(lx: Lexer) -> FetchAttribute:
    name = _read_name(lx)
    has_section = lx.peek() == 0x5B
    if name in ("BODY", "BODY.PEEK") and has_section:
        section = _read_section(lx)
        return BodySection(section, _read_partial(lx), is_peek=name == "BODY.PEEK")
    if name in ("BINARY", "BINARY.PEEK") and has_section:
        part = _read_binary_part(lx)
        return BinarySection(part, _read_partial(lx), is_peek=name == "BINARY.PEEK")
    if name == "BINARY.SIZE" and has_section:
        return BinarySize(_read_binary_part(lx))
    if name == "PREVIEW" and not has_section:
        _skip_preview_modifiers(lx)
        return SimpleAttribute(name)
    if name in SIMPLE_ATTRIBUTES and not has_section:
        return SimpleAttribute(name)
    raise ParseError(f"unknown fetch attribute {name}")


def parse_fetch_attributes(lx: Lexer) -> tuple[FetchAttribute, ...]:
    """"ALL" / "FULL" / "FAST" / fetch-att / "(" fetch-att *(SP fetch-att) ")"."""
    if lx.peek() == 0x28:
        return tuple(lx.read_list(lambda: parse_fetch_attribute(lx), allow_empty=False))
    for macro, names in _MACROS.items():
        if lx.skip_word(macro.encode("ascii")):
            return tuple(SimpleAttribute(name) for name in names)
    return (parse_fetch_attribute(lx),)
