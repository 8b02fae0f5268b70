"""SORT, UID SORT and CANCELUPDATE: command dataclasses and parsers (RFC 5256 §3 SORT,
RFC 5957 DISPLAYFROM/DISPLAYTO, RFC 5267 §3 ESORT RETURN options and §4.2 CANCELUPDATE,
RFC 9394 PARTIAL).

Owns the syntax around the search criteria (which are `imap/wire/search.py`'s) and the
return options (shared with SEARCH: `parse_return_options`); the handlers are
`imap/commands/sort.py`.

Invariants: sort keys are upper-cased and known (ARRIVAL CC DATE FROM SIZE SUBJECT TO
DISPLAYFROM DISPLAYTO), REVERSE applying to the key it precedes;
the charset is mandatory (RFC 5256 §3) and kept as sent, upper-cased: whether a codec
knows it is the handler's question (NO [BADCHARSET]).
"""

from __future__ import annotations

from dataclasses import dataclass

from postroom.imap.wire.commands.base import Command, ParseContext, Parser
from postroom.imap.wire.commands.search import parse_return_options
from postroom.imap.wire.lexer import ParseError, decode_text
from postroom.imap.wire.search import PartialRange, SearchKey, parse_search_criteria

SORT_KEYS = frozenset({"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO",
                       "DISPLAYFROM", "DISPLAYTO"})  # fmt: skip
# RFC 5267 §3.1 (MIN MAX ALL COUNT), §4.1 (UPDATE, CONTEXT); RFC 9394 (PARTIAL). SAVE is
# SEARCHRES's (RFC 5182) and defined for SEARCH only.
SORT_RETURN_OPTIONS = frozenset({"MIN", "MAX", "ALL", "COUNT", "UPDATE", "CONTEXT", "PARTIAL"})
MAX_CANCEL_TAGS = 100  # CANCELUPDATE names contexts; a session holds far fewer


@dataclass(frozen=True, slots=True)
class SortCriterion:
    key: str  # one of SORT_KEYS
    is_reverse: bool = False


@dataclass(frozen=True, slots=True)
class Sort(Command):
    """`return_options` None: the RFC 5256 `* SORT` answer; else ESORT (RFC 5267 §3)."""

    criteria: tuple[SortCriterion, ...]
    charset: str
    search: SearchKey
    return_options: tuple[str, ...] | None = None
    partial: PartialRange | None = None
    is_uid: bool = False


@dataclass(frozen=True, slots=True)
class CancelUpdate(Command):
    """RFC 5267 §4.2: stop the UPDATE contexts of these command tags."""

    tags: tuple[str, ...]


def _parse_criterion(ctx: ParseContext) -> SortCriterion:
    lx = ctx.lx
    word = lx.read_atom().upper()
    is_reverse = word == "REVERSE"
    if is_reverse:
        lx.expect_sp()
        word = lx.read_atom().upper()
    if word not in SORT_KEYS:
        raise ParseError(f"unknown sort key {word}")
    return SortCriterion(word, is_reverse)


def _parse_sort(ctx: ParseContext, is_uid: bool) -> Command:
    lx = ctx.lx
    lx.expect_sp()
    returns, partial = None, None
    if lx.skip_word(b"RETURN"):  # RFC 5267 §3.1
        lx.expect_sp()
        returns, partial = parse_return_options(lx, SORT_RETURN_OPTIONS)
        lx.expect_sp()
    criteria = lx.read_list(lambda: _parse_criterion(ctx), allow_empty=False)
    lx.expect_sp()
    charset = decode_text(lx.read_astring()).upper()  # RFC 5256 §3: charset is required
    lx.expect_sp()
    search = parse_search_criteria(lx, charset=charset)
    return Sort(ctx.tag, tuple(criteria), charset, search, returns, partial, is_uid)


def _parse_cancel_update(ctx: ParseContext) -> Command:
    # RFC 5267 §5: "CANCELUPDATE" 1*(SP quoted)
    lx = ctx.lx
    tags: list[str] = []
    while not lx.at_end():
        lx.expect_sp()
        tags.append(decode_text(lx.read_quoted()))
        if len(tags) > MAX_CANCEL_TAGS:
            raise ParseError("too many tags")
    if not tags:
        raise ParseError("CANCELUPDATE needs a tag")
    return CancelUpdate(ctx.tag, tuple(tags))


PARSERS: dict[str, Parser] = {
    "SORT": lambda ctx: _parse_sort(ctx, False),
    "UID SORT": lambda ctx: _parse_sort(ctx, True),
    "CANCELUPDATE": _parse_cancel_update,
}
