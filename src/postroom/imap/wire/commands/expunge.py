"""EXPUNGE and UID EXPUNGE: command dataclasses and parsers (RFC 9051 §6.4.3, §6.4.9;
RFC 4315 UIDPLUS).

Owns their syntax; the handler is `imap/commands/expunge.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

from postroom.imap.wire.commands.base import Command, ParseContext, Parser, no_args
from postroom.imap.wire.grammar import SequenceSet


@dataclass(frozen=True, slots=True)
class Expunge(Command):
    pass


@dataclass(frozen=True, slots=True)
class UidExpunge(Command):
    sequence_set: SequenceSet


def parse_uid_expunge(ctx: ParseContext) -> Command:
    return UidExpunge(ctx.tag, ctx.sequence_set())


PARSERS: dict[str, Parser] = {
    "EXPUNGE": no_args(Expunge),
    "UID EXPUNGE": parse_uid_expunge,
}
