"""FETCH and UID FETCH: command dataclass and parser (RFC 9051 §6.4.5, §6.4.9; RFC 7162
§3.1.4.1 CHANGEDSINCE and §3.2.6 VANISHED; RFC 9394 §3.3 PARTIAL).

Owns the command around the attributes; the attributes themselves are
`imap/wire/fetch.py`, the handler `imap/commands/fetch.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

from postroom.imap.wire.commands.base import Command, ParseContext, Parser, parse_params
from postroom.imap.wire.fetch import FetchAttribute, parse_fetch_attributes
from postroom.imap.wire.grammar import SequenceSet
from postroom.imap.wire.lexer import MAX_NUMBER64, ParseError
from postroom.imap.wire.search import PartialRange, parse_partial_range


@dataclass(frozen=True, slots=True)
class Fetch(Command):
    """For UID FETCH the handler must add UID to the answer (RFC 9051 §6.4.9)."""

    sequence_set: SequenceSet
    attributes: tuple[FetchAttribute, ...]
    changed_since: int | None = None  # RFC 7162 §3.1.4.1 CHANGEDSINCE
    is_vanished: bool = False  # RFC 7162 §3.2.6 VANISHED (UID FETCH only)
    is_uid: bool = False
    # RFC 9394 §3.3: only these positions of the messages the rest selects (UID FETCH).
    partial: PartialRange | None = None


def _parse_fetch(ctx: ParseContext, is_uid: bool) -> Command:
    sequence_set = ctx.sequence_set()
    ctx.lx.expect_sp()
    attributes = parse_fetch_attributes(ctx.lx)
    changed_since, is_vanished, partial = None, False, None
    if ctx.lx.skip(b" "):  # RFC 7162 §3.1.4.1 / §3.2.6 fetch-modifiers
        readers = {"CHANGEDSINCE": lambda lx: lx.read_number(MAX_NUMBER64), "VANISHED": None,
                   "PARTIAL": parse_partial_range}  # fmt: skip
        for name, value in parse_params(ctx.lx, readers):
            if isinstance(value, int):
                changed_since = value
            if isinstance(value, PartialRange):
                partial = value
            is_vanished = is_vanished or name == "VANISHED"
    if is_vanished and (not is_uid or changed_since is None):
        raise ParseError("VANISHED needs UID FETCH with CHANGEDSINCE")  # RFC 7162 §3.2.6
    if partial is not None and not is_uid:
        raise ParseError("PARTIAL needs UID FETCH")  # RFC 9394 §3.3 extends UID FETCH
    return Fetch(ctx.tag, sequence_set, attributes, changed_since, is_vanished, is_uid,
                 partial)


PARSERS: dict[str, Parser] = {
    "FETCH": lambda ctx: _parse_fetch(ctx, False),
    "UID FETCH": lambda ctx: _parse_fetch(ctx, True),
}
