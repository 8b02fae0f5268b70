"""SELECT EXAMINE CLOSE UNSELECT: command dataclasses and parsers (RFC 9051 §6.3.2-§6.3.3,
§6.4.2; RFC 3691 UNSELECT; RFC 7162 §3.1.8 CONDSTORE and §3.2.5 QRESYNC parameters).

Owns the syntax of entering and leaving the selected state; handlers are
`imap/commands/select.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

from postroom.imap.wire.commands.base import (
    Command,
    ParseContext,
    Parser,
    no_args,
    parse_params,
)
from postroom.imap.wire.commands.mailboxes import read_mailbox_name
from postroom.imap.wire.grammar import SequenceSet, parse_sequence_set
from postroom.imap.wire.lexer import MAX_NUMBER64, Lexer


@dataclass(frozen=True, slots=True)
class QResync:
    """RFC 7162 §3.2.5: (uidvalidity modseq [known-uids [(seq-match-data)]])."""

    uidvalidity: int
    modseq: int
    known_uids: SequenceSet | None = None
    known_sequence_numbers: SequenceSet | None = None
    known_sequence_uids: SequenceSet | None = None


@dataclass(frozen=True, slots=True)
class SelectBase(Command):
    mailbox: str
    condstore: bool = False  # RFC 7162 §3.1.8 (CONDSTORE) select parameter
    qresync: QResync | None = None
    is_name_usable: bool = True  # False: legal syntax, no such name (wire/commands/mailboxes.py)


@dataclass(frozen=True, slots=True)
class Select(SelectBase):
    pass


@dataclass(frozen=True, slots=True)
class Examine(SelectBase):
    pass


@dataclass(frozen=True, slots=True)
class Close(Command):
    pass


@dataclass(frozen=True, slots=True)
class Unselect(Command):
    pass


def _parse_qresync(lx: Lexer) -> QResync:
    def read() -> QResync:
        uidvalidity = lx.read_nz_number()
        lx.expect_sp()
        modseq = lx.read_number(MAX_NUMBER64)
        known = seq = seq_uids = None
        if lx.skip(b" "):
            if lx.peek() != 0x28:
                known = parse_sequence_set(lx)
                if not lx.skip(b" "):
                    return QResync(uidvalidity, modseq, known)
            lx.expect(b"(")
            seq = parse_sequence_set(lx)
            lx.expect_sp()
            seq_uids = parse_sequence_set(lx)
            lx.expect(b")")
        return QResync(uidvalidity, modseq, known, seq, seq_uids)

    lx.expect(b"(")
    value = read()
    lx.expect(b")")
    return value


def _parse_select(cls: type[SelectBase]) -> Parser:
    def parse(ctx: ParseContext) -> Command:
        mailbox, is_usable = read_mailbox_name(ctx)
        condstore, qresync = False, None
        if ctx.lx.skip(b" "):
            known = {"CONDSTORE": None, "QRESYNC": _parse_qresync}
            for name, value in parse_params(ctx.lx, known):
                condstore = condstore or name == "CONDSTORE"
                if isinstance(value, QResync):
                    qresync = value
        return cls(ctx.tag, mailbox, condstore, qresync, is_usable)

    return parse


PARSERS: dict[str, Parser] = {
    "SELECT": _parse_select(Select),
    "EXAMINE": _parse_select(Examine),
    "CLOSE": no_args(Close),
    "UNSELECT": no_args(Unselect),
}
