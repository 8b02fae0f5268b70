"""SEARCH and UID SEARCH: command dataclass and parser (RFC 9051 §6.4.4; RFC 4731 ESEARCH
RETURN options; RFC 5182 SEARCHRES).

Owns the command around the criteria; the criteria tree itself is `imap/wire/search.py`,
the handler `imap/commands/search.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

from postroom.imap.wire.commands.base import (
    Command,
    ParseContext,
    Parser,
    read_upper_atom_list,
)
from postroom.imap.wire.lexer import Lexer, ParseError, decode_text
from postroom.imap.wire.search import SearchKey, parse_search_criteria

SEARCH_RETURN_OPTIONS = frozenset({"MIN", "MAX", "ALL", "COUNT", "SAVE"})


@dataclass(frozen=True, slots=True)
class Search(Command):
    """`return_options` is None without RETURN (rev1 SEARCH answer); RETURN () is
    normalised to ("ALL",) (RFC 4731 §3.1)."""

    criteria: SearchKey
    charset: str | None = None
    return_options: tuple[str, ...] | None = None
    is_uid: bool = False


def _parse_search_return(lx: Lexer) -> tuple[str, ...]:
    options = read_upper_atom_list(lx)
    if set(options) - SEARCH_RETURN_OPTIONS:
        raise ParseError("unknown SEARCH return option")
    return tuple(options) or ("ALL",)  # RFC 4731 §3.1: RETURN () means RETURN (ALL)


def _parse_search(ctx: ParseContext, is_uid: bool) -> Command:
    lx = ctx.lx
    lx.expect_sp()
    returns = None
    if lx.skip_word(b"RETURN"):  # RFC 4731 §3 / RFC 9051 §6.4.4
        lx.expect_sp()
        returns = _parse_search_return(lx)
        lx.expect_sp()
    charset = None
    if lx.skip_word(b"CHARSET"):
        lx.expect_sp()
        charset = decode_text(lx.read_astring()).upper()
        lx.expect_sp()
    criteria = parse_search_criteria(lx, charset=charset)
    return Search(ctx.tag, criteria, charset, returns, is_uid)


PARSERS: dict[str, Parser] = {
    "SEARCH": lambda ctx: _parse_search(ctx, False),
    "UID SEARCH": lambda ctx: _parse_search(ctx, True),
}
