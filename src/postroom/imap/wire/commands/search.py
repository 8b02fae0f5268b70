"""SEARCH and UID SEARCH: command dataclass and parser (RFC 9051 §6.4.4; RFC 4731 ESEARCH
RETURN options; RFC 5182 SEARCHRES; RFC 5267 §4 UPDATE and CONTEXT; RFC 9394 PARTIAL).

Owns the command around the criteria and the RETURN option list SORT shares
(`parse_return_options`); the criteria tree itself is `imap/wire/search.py`, the handler
`imap/commands/search.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

from postroom.imap.wire.commands.base import (
    Command,
    ParseContext,
    Parser,
)
from postroom.imap.wire.lexer import Lexer, ParseError, decode_text
from postroom.imap.wire.search import (
    PartialRange,
    SearchKey,
    parse_partial_range,
    parse_search_criteria,
)

# RFC 4731 §3.1, RFC 5182 §2 (SAVE), RFC 5267 §4.1 (UPDATE, CONTEXT), RFC 9394 §3.1 (PARTIAL)
SEARCH_RETURN_OPTIONS = frozenset({"MIN", "MAX", "ALL", "COUNT", "SAVE", "UPDATE", "CONTEXT",
                                   "PARTIAL"})  # fmt: skip


@dataclass(frozen=True, slots=True)
class Search(Command):
    """`return_options` is None without RETURN (rev1 SEARCH answer); RETURN () is
    normalised to ("ALL",) (RFC 4731 §3.1). With PARTIAL in them, `partial` is its range."""

    criteria: SearchKey
    charset: str | None = None
    return_options: tuple[str, ...] | None = None
    is_uid: bool = False
    partial: PartialRange | None = None


def parse_return_options(lx: Lexer, allowed: frozenset[str]
                         ) -> tuple[tuple[str, ...], PartialRange | None]:  # fmt: skip
    """RFC 4466 §2.6 search-return-opts "(" [opt *(SP opt)] ")", upper-cased, with the
    RFC 9394 §4 "PARTIAL" SP partial-range. RFC 9394 §3.1: one PARTIAL or one ALL at
    most, never both. RETURN () means RETURN (ALL) (RFC 4731 §3.1)."""
    partials: list[PartialRange] = []

    def option() -> str:
        name = lx.read_atom().upper()
        if name not in allowed:
            raise ParseError(f"unknown return option {name}")
        if name == "PARTIAL":
            lx.expect_sp()
            partials.append(parse_partial_range(lx))
        return name

    options = lx.read_list(option)
    if options.count("PARTIAL") + options.count("ALL") > 1:
        raise ParseError("at most one of PARTIAL and ALL")  # RFC 9394 §3.1
    return tuple(options) or ("ALL",), (partials[0] if partials else None)


def _parse_search(ctx: ParseContext, is_uid: bool) -> Command:
    lx = ctx.lx
    lx.expect_sp()
    returns, partial = None, None
    if lx.skip_word(b"RETURN"):  # RFC 4731 §3 / RFC 9051 §6.4.4
        lx.expect_sp()
        returns, partial = parse_return_options(lx, SEARCH_RETURN_OPTIONS)
        lx.expect_sp()
    charset = None
    if lx.skip_word(b"CHARSET"):
        lx.expect_sp()
        charset = decode_text(lx.read_astring()).upper()
        lx.expect_sp()
    criteria = parse_search_criteria(lx, charset=charset)
    return Search(ctx.tag, criteria, charset, returns, is_uid, partial)


PARSERS: dict[str, Parser] = {
    "SEARCH": lambda ctx: _parse_search(ctx, False),
    "UID SEARCH": lambda ctx: _parse_search(ctx, True),
}
