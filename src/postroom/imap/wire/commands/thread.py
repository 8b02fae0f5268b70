"""THREAD and UID THREAD: command dataclass and parser (RFC 5256 §4).

Owns `THREAD algorithm charset search-criteria`; the algorithms are mail/threading.py's,
the handler imap/commands/thread.py. The algorithm name is upper-cased and must be one we
run; the charset is required and checked by the handler (NO [BADCHARSET]).
"""

from __future__ import annotations

from dataclasses import dataclass

from postroom.imap.wire.commands.base import Command, ParseContext, Parser
from postroom.imap.wire.lexer import ParseError, decode_text
from postroom.imap.wire.search import SearchKey, parse_search_criteria

ALGORITHMS = ("ORDEREDSUBJECT", "REFERENCES")


@dataclass(frozen=True, slots=True)
class Thread(Command):
    algorithm: str
    charset: str
    search: SearchKey
    is_uid: bool = False


def _parse_thread(ctx: ParseContext, is_uid: bool) -> Command:
    lx = ctx.lx
    lx.expect_sp()
    algorithm = lx.read_atom().upper()
    if algorithm not in ALGORITHMS:
        raise ParseError(f"unknown threading algorithm {algorithm}")
    lx.expect_sp()
    charset = decode_text(lx.read_astring()).upper()
    lx.expect_sp()
    search = parse_search_criteria(lx, charset=charset)
    return Thread(ctx.tag, algorithm, charset, search, is_uid)


PARSERS: dict[str, Parser] = {
    "THREAD": lambda ctx: _parse_thread(ctx, False),
    "UID THREAD": lambda ctx: _parse_thread(ctx, True),
}
