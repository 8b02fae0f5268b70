"""GETMETADATA and SETMETADATA: command dataclasses and parsers (RFC 5464 §4, §5 with
erratum 3868: several entries are a parenthesised list).

Owns the syntax of the METADATA family and what makes an entry name valid; the handlers
are `imap/commands/metadata.py`.

Invariants: entry names come out lower-cased (RFC 5464 §3.2: they compare
case-insensitively) and valid: "/private/…" or "/shared/…" (GETMETADATA may name the
bare "/private" or "/shared" as a subtree), printable ASCII without "*" or "%", no "//",
no trailing "/", at most MAX_ENTRY_NAME_LENGTH octets and MAX_ENTRY_DEPTH components.
An invalid name is a syntax error (BAD). The mailbox "" names the server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from postroom.imap.wire.commands.base import Command, ParseContext, Parser
from postroom.imap.wire.grammar import parse_mailbox
from postroom.imap.wire.lexer import MAX_NUMBER64, Lexer, ParseError

MAX_ENTRY_NAME_LENGTH = 1024  # octets of one entry name
MAX_ENTRY_DEPTH = 16  # "/"-separated components of one entry name
_NAMESPACES = ("/private", "/shared")


class Depth(Enum):
    """RFC 5464 §4.2.2 DEPTH: the entry alone, its children too, or its whole subtree."""

    ZERO = "0"
    ONE = "1"
    INFINITY = "infinity"


@dataclass(frozen=True, slots=True)
class GetMetadata(Command):
    mailbox: str  # "" = the server (RFC 5464 §4.2)
    entries: tuple[str, ...]
    max_size: int | None = None  # RFC 5464 §4.2.1 MAXSIZE
    depth: Depth = Depth.ZERO


@dataclass(frozen=True, slots=True)
class SetMetadata(Command):
    mailbox: str
    # (entry, value); None removes the entry (RFC 5464 §4.3)
    values: tuple[tuple[str, bytes | None], ...] = field(repr=False)


def parse_entry(raw: bytes, *, is_subtree_allowed: bool = False) -> str:
    """An entry name, checked and lower-cased (see the module invariants)."""
    if len(raw) > MAX_ENTRY_NAME_LENGTH:
        raise ParseError(f"entry name longer than {MAX_ENTRY_NAME_LENGTH} octets")
    if any(byte < 0x20 or byte > 0x7E or byte in b"*%" for byte in raw):
        raise ParseError("entry names are printable ASCII without '*' or '%'")
    name = raw.decode("ascii").lower()
    if name.endswith("/") or "//" in name:
        raise ParseError("entry names have no empty component")
    if name.count("/") > MAX_ENTRY_DEPTH:
        raise ParseError(f"entry name deeper than {MAX_ENTRY_DEPTH} components")
    if name in _NAMESPACES and is_subtree_allowed:
        return name
    if not name.startswith(tuple(namespace + "/" for namespace in _NAMESPACES)):
        raise ParseError("entry names begin with /private/ or /shared/")
    return name


def _read_options(lx: Lexer) -> tuple[int | None, Depth]:
    max_size: int | None = None
    depth = Depth.ZERO

    def option() -> None:
        nonlocal max_size, depth
        name = lx.read_atom().upper()
        lx.expect_sp()
        if name == "MAXSIZE":
            max_size = lx.read_number(MAX_NUMBER64)
        elif name == "DEPTH":
            word = lx.read_atom().lower()
            depth = next((d for d in Depth if d.value == word), None) or _bad_depth(word)
        else:
            raise ParseError(f"unknown GETMETADATA option {name}")

    lx.read_list(option, allow_empty=False)
    return max_size, depth


def _bad_depth(word: str) -> Depth:
    raise ParseError(f"DEPTH is 0, 1 or infinity, not {word!r}")


def parse_getmetadata(ctx: ParseContext) -> Command:
    """getmetadata = "GETMETADATA" [SP getmetadata-options] SP mailbox SP entries."""
    lx = ctx.lx
    max_size, depth = None, Depth.ZERO
    lx.expect_sp()
    if lx.peek() == 0x28:  # a mailbox never starts with "(": these are the options
        max_size, depth = _read_options(lx)
        lx.expect_sp()
    mailbox = parse_mailbox(lx, is_utf8=ctx.is_utf8)
    lx.expect_sp()
    entries = lx.read_one_or_list(
        lambda: parse_entry(lx.read_astring(), is_subtree_allowed=True))
    return GetMetadata(ctx.tag, mailbox, tuple(dict.fromkeys(entries)), max_size, depth)


def _read_value(lx: Lexer) -> bytes | None:
    """value = nstring / literal8 (RFC 5464 §5)."""
    if lx.peek() in (0x7B, 0x7E):
        return lx.read_literal(allow_literal8=True)[0]
    if lx.skip_word(b"NIL"):
        return None
    return lx.read_quoted()


def parse_setmetadata(ctx: ParseContext) -> Command:
    """setmetadata = "SETMETADATA" SP mailbox SP "(" entry-value *(SP entry-value) ")"."""
    lx = ctx.lx
    mailbox = ctx.mailbox()
    lx.expect_sp()

    def entry_value() -> tuple[str, bytes | None]:
        name = parse_entry(lx.read_astring())
        lx.expect_sp()
        return name, _read_value(lx)

    values = lx.read_list(entry_value, allow_empty=False)
    if len({name for name, _ in values}) != len(values):
        raise ParseError("an entry is named twice")
    return SetMetadata(ctx.tag, mailbox, tuple(values))


PARSERS: dict[str, Parser] = {
    "GETMETADATA": parse_getmetadata,
    "SETMETADATA": parse_setmetadata,
}
