"""APPEND: command dataclasses and parser (RFC 9051 §6.3.12; RFC 3502 MULTIAPPEND;
RFC 3516 literal8; RFC 6855 §4 UTF8 data).

Owns APPEND's syntax; its handler is `imap/commands/append.py`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from postroom.imap.wire.commands.base import Command, ParseContext, Parser
from postroom.imap.wire.grammar import parse_date_time, parse_flag_list
from postroom.imap.wire.lexer import Lexer, ParseError


@dataclass(frozen=True, slots=True)
class AppendMessage:
    """One message of APPEND (several with MULTIAPPEND, RFC 3502)."""

    flags: tuple[str, ...]
    internal_date: dt.datetime | None
    data: bytes = field(repr=False)
    is_binary: bool = False  # sent as literal8 ~{n} (RFC 3516 §4.4)
    is_utf8: bool = False  # sent as UTF8 (~{n}) (RFC 6855 §4)


@dataclass(frozen=True, slots=True)
class Append(Command):
    mailbox: str
    messages: tuple[AppendMessage, ...]


def _parse_append_message(lx: Lexer) -> AppendMessage:
    flags: tuple[str, ...] = ()
    date: dt.datetime | None = None
    if lx.peek() == 0x28:
        flags = parse_flag_list(lx)
        lx.expect_sp()
    if lx.peek() == 0x22:
        date = parse_date_time(lx)
        lx.expect_sp()
    if lx.skip_word(b"UTF8"):  # RFC 6855 §4: "UTF8" SP "(" literal8 ")"
        lx.expect(b" (")
        data, _ = lx.read_literal(allow_literal8=True)
        lx.expect(b")")
        return AppendMessage(flags, date, data, is_utf8=True)
    if lx.peek() not in (0x7B, 0x7E):
        raise ParseError("APPEND data must be a literal")
    data, is_binary = lx.read_literal(allow_literal8=True)
    return AppendMessage(flags, date, data, is_binary=is_binary)


def parse_append(ctx: ParseContext) -> Command:
    mailbox = ctx.mailbox()
    messages = []
    while not ctx.lx.at_end():  # RFC 3502 MULTIAPPEND: 1*append-message
        ctx.lx.expect_sp()
        messages.append(_parse_append_message(ctx.lx))
    if not messages:
        raise ParseError("APPEND needs a message")
    return Append(ctx.tag, mailbox, tuple(messages))


PARSERS: dict[str, Parser] = {"APPEND": parse_append}
