"""COPY, MOVE and their UID forms: command dataclasses and parsers (RFC 9051 §6.4.7,
§6.4.8, §6.4.9; RFC 6851 MOVE).

Owns their syntax; the handler is `imap/commands/copymove.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

from postroom.imap.wire.commands.base import Command, ParseContext, Parser
from postroom.imap.wire.grammar import SequenceSet


@dataclass(frozen=True, slots=True)
class Copy(Command):
    sequence_set: SequenceSet
    mailbox: str
    is_uid: bool = False


@dataclass(frozen=True, slots=True)
class Move(Command):
    sequence_set: SequenceSet
    mailbox: str
    is_uid: bool = False


def _parse_transfer(cls: type[Copy] | type[Move], is_uid: bool) -> Parser:
    def parse(ctx: ParseContext) -> Command:
        sequence_set = ctx.sequence_set()
        return cls(ctx.tag, sequence_set, ctx.mailbox(), is_uid)

    return parse


PARSERS: dict[str, Parser] = {
    "COPY": _parse_transfer(Copy, False),
    "MOVE": _parse_transfer(Move, False),
    "UID COPY": _parse_transfer(Copy, True),
    "UID MOVE": _parse_transfer(Move, True),
}
