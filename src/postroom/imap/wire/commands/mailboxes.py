"""CREATE DELETE RENAME SUBSCRIBE UNSUBSCRIBE LIST LSUB STATUS: command dataclasses and
parsers (RFC 9051 §6.3.4-§6.3.11; RFC 5258 LIST-EXTENDED; RFC 5819 LIST-STATUS; RFC 6154
CREATE-SPECIAL-USE).

Owns the mailbox-level commands' syntax; handlers are `imap/commands/mailboxes.py`.

Invariants: a mailbox argument that is a legal astring but decodes to no name a mailbox
can have (8-bit bytes without UTF8=ACCEPT, a `&` that starts no modified UTF-7 run, a
control character) is not a syntax error: the command carries `is_name_usable=False` and
is answered NO (issue 17; Dovecot does the same), never BAD. RECURSIVEMATCH needs the
base selection option SUBSCRIBED (RFC 5258 §3.1, §6 `list-select-mod-opt`).
"""

from __future__ import annotations

from dataclasses import dataclass

from postroom.imap.wire.commands.base import (
    Command,
    ParseContext,
    Parser,
    parse_params,
    read_upper_atom_list,
)
from postroom.imap.wire.grammar import (
    decode_mailbox,
    parse_flag_list,
    parse_list_mailbox,
    parse_mailbox,
)
from postroom.imap.wire.lexer import Lexer, ParseError

STATUS_ITEMS = frozenset(
    {
        "MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "DELETED", "SIZE", "RECENT",
        "HIGHESTMODSEQ", "APPENDLIMIT", "MAILBOXID",
        "DELETED-STORAGE",  # RFC 9208 §4.2.4 (QUOTA=RES-STORAGE)
    }
)
LIST_SELECT_OPTIONS = frozenset({"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"})
LIST_RETURN_OPTIONS = frozenset({"SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS"})


@dataclass(frozen=True, slots=True)
class Create(Command):
    mailbox: str
    special_use: tuple[str, ...] = ()  # RFC 6154 §3 CREATE ... (USE (\Drafts))
    is_name_usable: bool = True  # see the module invariants


@dataclass(frozen=True, slots=True)
class Delete(Command):
    mailbox: str
    is_name_usable: bool = True


@dataclass(frozen=True, slots=True)
class Rename(Command):
    mailbox: str
    new_name: str
    is_name_usable: bool = True
    is_new_name_usable: bool = True


@dataclass(frozen=True, slots=True)
class Subscribe(Command):
    mailbox: str
    is_name_usable: bool = True


@dataclass(frozen=True, slots=True)
class Unsubscribe(Command):
    mailbox: str
    is_name_usable: bool = True


@dataclass(frozen=True, slots=True)
class List(Command):
    """LIST incl. LIST-EXTENDED (RFC 5258) and LIST-STATUS (RFC 5819).

    `selection` and `return_options` hold upper-case option names; `status_items` is the
    RETURN (STATUS (...)) list, or None. `is_extended` is True when any extended syntax
    (selection options, several patterns, RETURN) was used.
    """

    reference: str
    patterns: tuple[str, ...]
    selection: frozenset[str] = frozenset()
    return_options: frozenset[str] = frozenset()
    status_items: tuple[str, ...] | None = None
    is_extended: bool = False


@dataclass(frozen=True, slots=True)
class Lsub(Command):
    reference: str
    pattern: str


@dataclass(frozen=True, slots=True)
class Status(Command):
    mailbox: str
    items: tuple[str, ...]
    is_name_usable: bool = True


def read_mailbox_name(ctx: ParseContext) -> tuple[str, bool]:
    """SP mailbox: the decoded name, and whether it is one a mailbox can have (module
    invariants). An unusable name comes back as lossy text, for nothing but messages."""
    ctx.lx.expect_sp()
    raw = ctx.lx.read_astring()
    try:
        return decode_mailbox(raw, is_utf8=ctx.is_utf8), True
    except ParseError:
        return raw.decode("utf-8", "replace"), False


def _mailbox_only(cls: type[Delete | Subscribe | Unsubscribe]) -> Parser:
    def parse(ctx: ParseContext) -> Command:
        name, is_usable = read_mailbox_name(ctx)
        return cls(ctx.tag, name, is_usable)

    return parse


def parse_create(ctx: ParseContext) -> Command:
    mailbox, is_usable = read_mailbox_name(ctx)
    uses: tuple[str, ...] = ()
    if ctx.lx.skip(b" "):
        params = parse_params(ctx.lx, {"USE": parse_flag_list})
        uses = tuple(flag for _, value in params if isinstance(value, tuple) for flag in value)
    return Create(ctx.tag, mailbox, uses, is_usable)


def parse_rename(ctx: ParseContext) -> Command:
    old, is_old_usable = read_mailbox_name(ctx)
    new, is_new_usable = read_mailbox_name(ctx)
    return Rename(ctx.tag, old, new, is_old_usable, is_new_usable)


def _parse_list_return(lx: Lexer) -> tuple[frozenset[str], tuple[str, ...] | None]:
    options: set[str] = set()
    status: tuple[str, ...] | None = None

    def item() -> None:
        nonlocal status
        name = lx.read_atom().upper()
        if name not in LIST_RETURN_OPTIONS:
            raise ParseError(f"unknown LIST return option {name}")
        if name == "STATUS":  # RFC 5819 §2
            lx.expect_sp()
            status = _parse_status_items(lx)
        options.add(name)

    lx.read_list(item)
    return frozenset(options), status


def parse_list(ctx: ParseContext) -> Command:
    lx = ctx.lx
    lx.expect_sp()
    selection: frozenset[str] = frozenset()
    is_extended = False
    if lx.peek() == 0x28:  # RFC 5258 §3: list-select-opts
        selection = frozenset(read_upper_atom_list(lx))
        if selection - LIST_SELECT_OPTIONS:
            raise ParseError("unknown LIST selection option")
        if "RECURSIVEMATCH" in selection and "SUBSCRIBED" not in selection:
            # RFC 5258 §3.1: not alone, nor with REMOTE only; §6: it modifies a base
            # option, and SUBSCRIBED is the only one (SPECIAL-USE is independent).
            raise ParseError("RECURSIVEMATCH needs the SUBSCRIBED selection option")
        lx.expect_sp()
        is_extended = True
    reference = parse_mailbox(lx, is_utf8=ctx.is_utf8)
    lx.expect_sp()
    is_extended = is_extended or lx.peek() == 0x28
    patterns = lx.read_one_or_list(lambda: parse_list_mailbox(lx, is_utf8=ctx.is_utf8))
    options: frozenset[str] = frozenset()
    status = None
    if lx.skip(b" "):
        if not lx.skip_word(b"RETURN"):
            raise ParseError("expected RETURN")
        lx.expect_sp()
        options, status = _parse_list_return(lx)
        is_extended = True
    return List(ctx.tag, reference, tuple(patterns), selection, options, status, is_extended)


def parse_lsub(ctx: ParseContext) -> Command:
    lx = ctx.lx
    lx.expect_sp()
    reference = parse_mailbox(lx, is_utf8=ctx.is_utf8)
    lx.expect_sp()
    return Lsub(ctx.tag, reference, parse_list_mailbox(lx, is_utf8=ctx.is_utf8))


def _parse_status_items(lx: Lexer) -> tuple[str, ...]:
    items = lx.read_list(lambda: lx.read_atom().upper(), allow_empty=False)
    unknown = set(items) - STATUS_ITEMS
    if unknown:
        raise ParseError(f"unknown STATUS item {sorted(unknown)[0]}")
    return tuple(items)


def parse_status(ctx: ParseContext) -> Command:
    mailbox, is_usable = read_mailbox_name(ctx)
    ctx.lx.expect_sp()
    return Status(ctx.tag, mailbox, _parse_status_items(ctx.lx), is_usable)


PARSERS: dict[str, Parser] = {
    "CREATE": parse_create,
    "DELETE": _mailbox_only(Delete),
    "RENAME": parse_rename,
    "SUBSCRIBE": _mailbox_only(Subscribe),
    "UNSUBSCRIBE": _mailbox_only(Unsubscribe),
    "LIST": parse_list,
    "LSUB": parse_lsub,
    "STATUS": parse_status,
}
