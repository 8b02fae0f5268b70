"""IMAP command syntax, one module per command family (RFC 9051 §6, RFC 3501 §6), and
`parse_command(frame)`.

Owns the name → parser registry: each family module (same names as the handler families
in `imap/commands/`) defines its command dataclasses, their parsers and `PARSERS`, a dict
from the command name as sent ("FETCH", "UID FETCH") to its parser; `FAMILIES` lists the
modules and `PARSERS` here is their union. `base` holds `Command` and what parsers share.

Invariants:
- `parse_command` returns a `Command` or raises `ParseError` whose `tag` is set whenever the
  tag was readable, so the caller can answer `tag BAD ...` (or `* BAD` when it is None).
- Mailbox names are decoded Unicode (`grammar.decode_mailbox`); `is_utf8` selects UTF-8
  (after ENABLE UTF8=ACCEPT / IMAP4rev2) or modified UTF-7.
- UID FETCH/STORE/COPY/MOVE/SEARCH are the plain dataclasses with `is_uid=True`;
  UID EXPUNGE is `UidExpunge` (RFC 9051 §6.4.9).
- Parsing never consults mailbox or session state: semantic checks (is `*` valid in an
  empty mailbox, is VANISHED allowed without ENABLE QRESYNC, is the charset supported, is
  a flag settable, is the command allowed in this state) are the handlers' and the
  session's, through the command specs in `imap/commands/`.
- A name is registered by exactly one family (checked when this module is imported).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import ModuleType

from postroom.imap.wire.commands import (
    append,
    auth,
    copymove,
    expunge,
    fetch,
    mailboxes,
    metadata,
    misc,
    notify,
    quota,
    search,
    select,
    sort,
    store,
    thread,
)
from postroom.imap.wire.commands.base import Command, ParseContext, Parser
from postroom.imap.wire.grammar import parse_tag
from postroom.imap.wire.lexer import Lexer, ParseError

FAMILIES: tuple[ModuleType, ...] = (
    misc, auth, select, mailboxes, append, expunge, search, fetch, store, copymove,
    quota,
    sort,
    notify,
    metadata,
    thread,
)  # fmt: skip


def _merge(families: Iterable[ModuleType]) -> dict[str, Parser]:
    merged: dict[str, Parser] = {}
    for family in families:
        parsers: Mapping[str, Parser] = family.PARSERS
        for name, parser in parsers.items():
            if name in merged:
                raise RuntimeError(f"IMAP command {name} is registered twice")
            merged[name] = parser
    return merged


PARSERS: dict[str, Parser] = _merge(FAMILIES)


def read_command_name(lx: Lexer) -> str:
    """Command name, with "UID " folded in ("UID FETCH")."""
    name = lx.read_atom().upper()
    if name == "UID":
        lx.expect_sp()
        name = "UID " + lx.read_atom().upper()
    return name


def parse_command(frame: bytes, *, is_utf8: bool = False) -> Command:
    """Parse one framed command (no trailing CRLF). Raises `ParseError` with `.tag` set."""
    lx = Lexer(frame)
    try:
        tag = parse_tag(lx)
        lx.expect_sp()
    except ParseError as exc:
        raise ParseError("missing or invalid tag") from exc
    try:
        name = read_command_name(lx)
        parser = PARSERS.get(name)
        if parser is None:
            raise ParseError(f"unknown command {name}")
        command = parser(ParseContext(lx, tag, is_utf8))
        lx.expect_end()
    except ParseError as exc:
        raise ParseError(exc.message, tag) from exc
    return command


__all__ = ["FAMILIES", "PARSERS", "Command", "parse_command", "read_command_name"]
