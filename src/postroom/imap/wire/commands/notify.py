"""NOTIFY: command dataclasses and parser (RFC 5465 §3, §6, §8).

Owns the syntax of `NOTIFY NONE` and `NOTIFY SET [STATUS] (filter events) ...`; what the
events mean, which combinations are allowed and what is sent is `imap/commands/notify.py`.

Invariants: known event names come out in the RFC's spelling ("MessageNew"), unknown ones
as sent (the handler answers NO [BADEVENT]); mailbox names are decoded like any other;
fetch attributes after MessageNew are parsed with the FETCH grammar.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from postroom.imap.wire.commands.base import Command, ParseContext, Parser
from postroom.imap.wire.fetch import FetchAttribute, parse_fetch_attributes
from postroom.imap.wire.grammar import parse_mailbox
from postroom.imap.wire.lexer import ParseError

# RFC 5465 §5 and §8 (event names are case-insensitive atoms).
KNOWN_EVENTS = ("MessageNew", "MessageExpunge", "FlagChange", "AnnotationChange",
                "MailboxName", "SubscriptionChange", "MailboxMetadataChange",
                "ServerMetadataChange")  # fmt: skip
_BY_UPPER = {name.upper(): name for name in KNOWN_EVENTS}


class MailboxFilter(Enum):
    """RFC 5465 §6: filter-mailboxes."""

    SELECTED = "SELECTED"
    SELECTED_DELAYED = "SELECTED-DELAYED"
    INBOXES = "INBOXES"
    PERSONAL = "PERSONAL"
    SUBSCRIBED = "SUBSCRIBED"
    SUBTREE = "SUBTREE"
    MAILBOXES = "MAILBOXES"

    @property
    def is_selected(self) -> bool:
        return self in (MailboxFilter.SELECTED, MailboxFilter.SELECTED_DELAYED)

    @property
    def takes_names(self) -> bool:
        return self in (MailboxFilter.SUBTREE, MailboxFilter.MAILBOXES)


@dataclass(frozen=True, slots=True)
class EventGroup:
    """One `(filter events)`: `events` is empty for NONE (RFC 5465 §3.1)."""

    filter: MailboxFilter
    mailboxes: tuple[str, ...]  # SUBTREE / MAILBOXES only
    events: tuple[str, ...]
    fetch_attributes: tuple[FetchAttribute, ...] = ()  # after MessageNew


@dataclass(frozen=True, slots=True)
class Notify(Command):
    """`NOTIFY SET` with its groups, or `NOTIFY NONE` (no groups)."""

    is_status: bool  # STATUS: report the current state of the named mailboxes now
    groups: tuple[EventGroup, ...]

    @property
    def is_none(self) -> bool:
        return not self.groups


def _parse_filter(ctx: ParseContext) -> tuple[MailboxFilter, tuple[str, ...]]:
    word = ctx.lx.read_atom().upper()
    try:
        kind = MailboxFilter(word)
    except ValueError as exc:
        raise ParseError(f"unknown NOTIFY filter {word}") from exc
    if not kind.takes_names:
        return kind, ()
    # one-or-more-mailbox = mailbox / "(" mailbox *(SP mailbox) ")"
    ctx.lx.expect_sp()
    names = ctx.lx.read_one_or_list(lambda: parse_mailbox(ctx.lx, is_utf8=ctx.is_utf8))
    return kind, tuple(names)


def _parse_events(ctx: ParseContext) -> tuple[tuple[str, ...], tuple[FetchAttribute, ...]]:
    lx = ctx.lx
    if lx.skip_word(b"NONE"):
        return (), ()
    fetch: tuple[FetchAttribute, ...] = ()

    def event() -> str:
        nonlocal fetch
        raw = lx.read_atom()
        name = _BY_UPPER.get(raw.upper(), raw)
        if name == "MessageNew" and lx.buf[lx.pos : lx.pos + 2] == b" (":
            lx.expect_sp()  # RFC 5465 §8: "MessageNew" [SP "(" fetch-att ... ")"]
            fetch = parse_fetch_attributes(lx)
        return name

    events = lx.read_list(event, allow_empty=False)
    return tuple(events), fetch


def _parse_group(ctx: ParseContext) -> EventGroup:
    ctx.lx.expect(b"(")
    kind, names = _parse_filter(ctx)
    ctx.lx.expect_sp()
    events, fetch = _parse_events(ctx)
    ctx.lx.expect(b")")
    return EventGroup(kind, names, events, fetch)


def parse_notify(ctx: ParseContext) -> Command:
    lx = ctx.lx
    lx.expect_sp()
    if lx.skip_word(b"NONE"):
        return Notify(ctx.tag, False, ())
    if not lx.skip_word(b"SET"):
        raise ParseError("expected NOTIFY SET or NOTIFY NONE")
    lx.expect_sp()
    is_status = lx.skip_word(b"STATUS")
    if is_status:
        lx.expect_sp()
    groups = [_parse_group(ctx)]
    while lx.skip(b" "):
        groups.append(_parse_group(ctx))
    return Notify(ctx.tag, is_status, tuple(groups))


PARSERS: dict[str, Parser] = {
    "NOTIFY": parse_notify,
}
