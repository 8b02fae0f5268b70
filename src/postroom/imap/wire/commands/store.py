"""STORE and UID STORE: command dataclass and parser (RFC 9051 §6.4.6, §6.4.9; RFC 7162
§3.1.3 UNCHANGEDSINCE).

Owns STORE's syntax; the handler is `imap/commands/store.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from postroom.imap.wire.commands.base import Command, ParseContext, Parser, parse_params
from postroom.imap.wire.grammar import SequenceSet, parse_flag, parse_flag_list
from postroom.imap.wire.lexer import MAX_NUMBER64, ParseError


class StoreMode(Enum):
    REPLACE = "FLAGS"
    ADD = "+FLAGS"
    REMOVE = "-FLAGS"


@dataclass(frozen=True, slots=True)
class Store(Command):
    sequence_set: SequenceSet
    mode: StoreMode
    flags: tuple[str, ...]
    is_silent: bool = False
    unchanged_since: int | None = None  # RFC 7162 §3.1.3 UNCHANGEDSINCE
    is_uid: bool = False


def _parse_store(ctx: ParseContext, is_uid: bool) -> Command:
    lx = ctx.lx
    sequence_set = ctx.sequence_set()
    lx.expect_sp()
    unchanged_since = None
    if lx.peek() == 0x28:  # RFC 7162 §3.1.3 store-modifier
        params = parse_params(lx, {"UNCHANGEDSINCE": lambda lx: lx.read_number(MAX_NUMBER64)})
        unchanged_since = next(v for _, v in params if isinstance(v, int))
        lx.expect_sp()
    prefix = "+" if lx.skip(b"+") else "-" if lx.skip(b"-") else ""
    if not lx.skip(b"FLAGS"):
        raise ParseError("expected FLAGS, +FLAGS or -FLAGS")
    is_silent = lx.skip(b".SILENT")
    lx.expect_sp()
    if lx.peek() == 0x28:
        flags = parse_flag_list(lx)
    else:  # RFC 9051 §9 store-att-flags: flag *(SP flag) without parentheses
        flags_list = [parse_flag(lx)]
        while lx.skip(b" "):
            flags_list.append(parse_flag(lx))
        flags = tuple(flags_list)
    mode = StoreMode(prefix + "FLAGS")
    return Store(ctx.tag, sequence_set, mode, flags, is_silent, unchanged_since, is_uid)


PARSERS: dict[str, Parser] = {
    "STORE": lambda ctx: _parse_store(ctx, False),
    "UID STORE": lambda ctx: _parse_store(ctx, True),
}
