"""GETQUOTA GETQUOTAROOT SETQUOTA: command dataclasses and parsers (RFC 9208 §4.1).

Owns the QUOTA extension's syntax; the handlers are `imap/commands/quota.py`. A quota root
is an astring (RFC 9208 §6: `getquota = "GETQUOTA" SP quota-root-name`); SETQUOTA's list
holds `resource-name SP resource-limit` pairs, names upper-cased (§6: `setquota-resource`,
resource-limit a number64).
"""

from __future__ import annotations

from dataclasses import dataclass

from postroom.imap.wire.commands.base import Command, ParseContext, Parser, mailbox_only
from postroom.imap.wire.lexer import MAX_NUMBER64, ParseError, decode_text


@dataclass(frozen=True, slots=True)
class GetQuota(Command):
    root: str


@dataclass(frozen=True, slots=True)
class GetQuotaRoot(Command):
    mailbox: str


@dataclass(frozen=True, slots=True)
class SetQuota(Command):
    root: str
    limits: tuple[tuple[str, int], ...]  # (resource name upper-cased, limit)


def _root(ctx: ParseContext) -> str:
    ctx.lx.expect_sp()
    return decode_text(ctx.lx.read_astring())


def parse_getquota(ctx: ParseContext) -> Command:
    return GetQuota(ctx.tag, _root(ctx))


def parse_setquota(ctx: ParseContext) -> Command:
    root = _root(ctx)
    ctx.lx.expect_sp()
    limits: list[tuple[str, int]] = []

    def resource() -> None:
        name = ctx.lx.read_atom().upper()
        ctx.lx.expect_sp()
        limits.append((name, ctx.lx.read_number(MAX_NUMBER64)))

    ctx.lx.read_list(resource)
    if len({name for name, _ in limits}) != len(limits):
        raise ParseError("SETQUOTA names a resource twice")  # RFC 9208 §4.1.3
    return SetQuota(ctx.tag, root, tuple(limits))


PARSERS: dict[str, Parser] = {
    "GETQUOTA": parse_getquota,
    "GETQUOTAROOT": mailbox_only(GetQuotaRoot),
    "SETQUOTA": parse_setquota,
}
