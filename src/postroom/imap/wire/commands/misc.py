"""CAPABILITY NOOP CHECK LOGOUT ID ENABLE NAMESPACE IDLE COMPRESS: command dataclasses and
parsers (RFC 9051 §6.1, §6.3.1, §6.3.10, §6.3.13, §6.4.1; RFC 2971 ID; RFC 5161 ENABLE;
RFC 4978 COMPRESS).

Owns the session-setting commands' syntax; their handlers are `imap/commands/misc.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

from postroom.imap.wire.commands.base import Command, ParseContext, Parser, no_args
from postroom.imap.wire.lexer import ParseError, decode_text


@dataclass(frozen=True, slots=True)
class Capability(Command):
    pass


@dataclass(frozen=True, slots=True)
class Noop(Command):
    pass


@dataclass(frozen=True, slots=True)
class Check(Command):
    pass


@dataclass(frozen=True, slots=True)
class Logout(Command):
    pass


@dataclass(frozen=True, slots=True)
class Namespace(Command):
    pass


@dataclass(frozen=True, slots=True)
class Idle(Command):
    pass


@dataclass(frozen=True, slots=True)
class Enable(Command):
    capabilities: tuple[str, ...]  # upper-cased, e.g. ("IMAP4REV2", "UTF8=ACCEPT")


@dataclass(frozen=True, slots=True)
class Compress(Command):
    algorithm: str  # upper-cased; RFC 4978 §3 defines DEFLATE only


@dataclass(frozen=True, slots=True)
class Id(Command):
    """RFC 2971: None for `ID NIL`, else (field, value-or-None) pairs."""

    parameters: tuple[tuple[str, str | None], ...] | None


def parse_enable(ctx: ParseContext) -> Command:
    names: list[str] = []
    while not ctx.lx.at_end():
        ctx.lx.expect_sp()
        names.append(ctx.lx.read_atom().upper())
    if not names:
        raise ParseError("ENABLE needs a capability")
    return Enable(ctx.tag, tuple(names))


def parse_compress(ctx: ParseContext) -> Command:
    # RFC 4978 §4: command-compress = "COMPRESS" SP algorithm; algorithm = atom
    ctx.lx.expect_sp()
    return Compress(ctx.tag, ctx.lx.read_atom().upper())


def parse_id(ctx: ParseContext) -> Command:
    lx = ctx.lx
    lx.expect_sp()
    if lx.skip_word(b"NIL"):
        return Id(ctx.tag, None)
    values: list[str | None] = []

    def item() -> None:
        raw = lx.read_nstring()
        values.append(None if raw is None else decode_text(raw))

    lx.read_list(item)
    if len(values) % 2 or any(key is None for key in values[::2]):
        raise ParseError("ID needs field/value pairs")
    pairs = tuple((str(values[i]), values[i + 1]) for i in range(0, len(values), 2))
    return Id(ctx.tag, pairs)


PARSERS: dict[str, Parser] = {
    "CAPABILITY": no_args(Capability),
    "NOOP": no_args(Noop),
    "CHECK": no_args(Check),
    "LOGOUT": no_args(Logout),
    "NAMESPACE": no_args(Namespace),
    "IDLE": no_args(Idle),
    "ENABLE": parse_enable,
    "ID": parse_id,
    "COMPRESS": parse_compress,
}
