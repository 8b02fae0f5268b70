"""What every command family's parsers share (RFC 9051 §6, §9; RFC 4466 §2.1).

Owns `Command` (the base of every command dataclass: it carries the tag), the
`ParseContext` a parser reads from, the `Parser` type, and the small productions several
families use (command parameters, upper-cased atom lists, argument-less commands).

Invariants: a parser reads its command's arguments only (the tag and the name are already
consumed, the end of the line is checked by `parse_command`), raises `ParseError` on bad
syntax, and never consults session or mailbox state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from postroom.imap.wire.grammar import SequenceSet, parse_mailbox, parse_sequence_set
from postroom.imap.wire.lexer import Lexer, ParseError


@dataclass(frozen=True, slots=True)
class Command:
    tag: str


@dataclass(slots=True)
class ParseContext:
    lx: Lexer
    tag: str
    is_utf8: bool  # mailbox names are UTF-8, else modified UTF-7 (RFC 9051 §5.1)

    def mailbox(self) -> str:
        self.lx.expect_sp()
        return parse_mailbox(self.lx, is_utf8=self.is_utf8)

    def sequence_set(self) -> SequenceSet:
        self.lx.expect_sp()
        return parse_sequence_set(self.lx)


Parser = Callable[[ParseContext], Command]


def no_args(cls: Callable[[str], Command]) -> Parser:
    return lambda ctx: cls(ctx.tag)


def mailbox_only(cls: Callable[[str, str], Command]) -> Parser:
    return lambda ctx: cls(ctx.tag, ctx.mailbox())


def parse_params(
    lx: Lexer, known: Mapping[str, Callable[[Lexer], object] | None]
) -> list[tuple[str, object]]:
    """RFC 4466 §2.1: "(" name [SP value] *(SP name [SP value]) ")" for known names only."""

    def item() -> tuple[str, object]:
        name = lx.read_atom().upper()
        if name not in known:
            raise ParseError(f"unknown parameter {name}")
        reader = known[name]
        if reader is None:
            return name, None
        lx.expect_sp()
        return name, reader(lx)

    return lx.read_list(item, allow_empty=False)


def read_upper_atom_list(lx: Lexer) -> list[str]:
    return lx.read_list(lambda: lx.read_atom().upper())
