"""NOTIFY SET / NOTIFY NONE (RFC 5465): which changes a session hears about unasked, and
the responses that tell it.

Owns `NotifyState` (the filters in force, what the client was last told about mailbox
names and subscriptions, the mailboxes with unreported changes) and
`send_notifications`, which the session calls after each command, in IDLE, and between
commands when the change feed wakes it (RFC 5465 §4: notifications are not limited to
IDLE).

Invariants:
- What is reported is read from the store when it is sent, never taken from feed
  payloads, so coalesced events lose nothing: STATUS (MESSAGES UIDNEXT UIDVALIDITY UNSEEN,
  and HIGHESTMODSEQ once CONDSTORE is on) for message events in other mailboxes (§5.2),
  LIST for MailboxName (§5.4) and SubscriptionChange (§5.5).
- The selected mailbox never gets STATUS; its EXISTS/EXPUNGE/FETCH go out between
  commands only under a SELECTED filter (EXPUNGE then too), or SELECTED-DELAYED (EXPUNGE
  waits for a command that allows it, §6).
- Unreported changes are bounded: past MAX_PENDING_MAILBOXES mailboxes, or when the feed
  queue overflowed, the session says `* OK [NOTIFICATIONOVERFLOW]` and NOTIFY is off
  (§5.8), as after NOTIFY NONE.
- Changes the store's feed does not carry (subscriptions, METADATA entries) are published
  by the session that made them (`publish_session_change`), so they reach the sessions
  of this process only; METADATA changes carry the entry names in `Change.kinds`
  (names start with "/", no other kind does) and are reported as unsolicited METADATA
  responses listing the entries (§5.6, §5.7; RFC 5464 §4.4.2).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field

from postroom.errors import BadSyntax, Refused
from postroom.imap.commands.context import Context, Done
from postroom.imap.commands.fetch import handle_fetch
from postroom.imap.commands.mailboxes import SEPARATOR
from postroom.imap.commands.spec import AUTHENTICATED, CommandSpec
from postroom.imap.wire.commands import Command
from postroom.imap.wire.commands.fetch import Fetch
from postroom.imap.wire.commands.mailboxes import Subscribe, Unsubscribe
from postroom.imap.wire.commands.metadata import SetMetadata
from postroom.imap.wire.commands.notify import EventGroup, MailboxFilter, Notify
from postroom.imap.wire.grammar import SequenceSet, is_atom_text
from postroom.imap.wire.responses import (
    Atom,
    mailbox_value,
    render_list,
    render_status,
    render_untagged,
    render_untagged_status,
)
from postroom.store.api import Change, Mailbox

# One NOTIFY SET may name this many mailboxes (SUBTREE and MAILBOXES together).
MAX_NOTIFY_MAILBOXES = 100
# Mailboxes with changes not yet reported before the session is told it fell behind.
MAX_PENDING_MAILBOXES = 1000
# `Change.mailbox_id` of a subscription change (SUBSCRIBE/UNSUBSCRIBE, published by the
# session): no mailbox row has id 0.
SUBSCRIPTIONS = 0
SERVER_METADATA = -1  # `Change.mailbox_id` of a server METADATA change
SUPPORTED_EVENTS = ("MessageNew", "MessageExpunge", "FlagChange", "MailboxName",
                    "SubscriptionChange", "MailboxMetadataChange", "ServerMetadataChange")
MAILBOX_EVENTS = frozenset({"MailboxName", "SubscriptionChange", "MailboxMetadataChange",
                            "ServerMetadataChange"})  # fmt: skip
_MESSAGE_KINDS = frozenset({"append", "expunge", "flags"})


@dataclass(slots=True)
class NotifyState:
    """One session's NOTIFY SET. See the module docstring."""

    groups: tuple[EventGroup, ...]
    names: dict[int, str]  # mailbox id → name, as the client knows it
    subscribed: set[str]
    pending: dict[int, set[str]] = field(default_factory=dict)
    is_overflow: bool = False
    fetch_mark: tuple[int, int] | None = None  # (mailbox id, last UID fetched for MessageNew)

    def note(self, changes: Sequence[Change], is_overflow: bool) -> None:
        """`ChangeListener.note`: remember which mailboxes changed, and how."""
        self.is_overflow = self.is_overflow or is_overflow
        for change in changes:
            self.pending.setdefault(change.mailbox_id, set()).update(change.kinds)
        if len(self.pending) > MAX_PENDING_MAILBOXES:
            self.is_overflow = True
            self.pending.clear()

    @property
    def selected_group(self) -> EventGroup | None:
        return next((g for g in self.groups if g.filter.is_selected), None)

    def group_for(self, name: str, event: str) -> EventGroup | None:
        """The first non-selected filter covering `name` that asks for `event`."""
        for group in self.groups:
            if event in group.events and self._covers(group, name):
                return group
        return None

    def _covers(self, group: EventGroup, name: str) -> bool:
        kind = group.filter
        if kind is MailboxFilter.PERSONAL:
            return True  # one personal namespace holds every mailbox
        if kind is MailboxFilter.INBOXES:
            return name == "INBOX"  # where SMTP delivers (RFC 5465 §6)
        if kind is MailboxFilter.SUBSCRIBED:
            return name in self.subscribed
        if kind is MailboxFilter.MAILBOXES:
            return name in group.mailboxes
        if kind is MailboxFilter.SUBTREE:
            return any(name == top or name.startswith(top + SEPARATOR)
                       for top in group.mailboxes)  # fmt: skip
        return False  # SELECTED filters cover the selected mailbox only


# -- NOTIFY ------------------------------------------------------------------------------------
async def handle_notify(ctx: Context, command: Notify) -> Done:
    if command.is_none:
        ctx.notify = None  # RFC 5465 §3.2
        return Done("NOTIFY completed")
    unsupported = _check(command)
    if unsupported:
        # RFC 5465 §3.1: NO [BADEVENT (the events we support)].
        return Done(f"unsupported event {unsupported[0]}", "BADEVENT",
                    ([Atom(event) for event in SUPPORTED_EVENTS],), status="NO")  # fmt: skip
    store = ctx.runtime.store
    boxes = await store.list_mailboxes(ctx.account_id)
    subscribed = set(await store.list_subscriptions(ctx.account_id))
    state = NotifyState(command.groups, {box.id: box.name for box in boxes}, subscribed)
    if ctx.selected is not None:
        uids = ctx.selected.uids
        state.fetch_mark = (ctx.selected.mailbox_id, uids[-1] if uids else 0)
    ctx.notify = state
    if command.is_status:  # RFC 5465 §3.1: the current state of every watched mailbox
        await ctx.write(b"".join([await _render_status(ctx, box) for box in boxes
                                  if _is_watched(ctx, state, box)]))  # fmt: skip
    return Done("NOTIFY completed")


def _check(command: Notify) -> list[str]:
    """BAD for what RFC 5465 forbids; the unsupported event names (for BADEVENT)."""
    seen: set[str] = set()
    names = 0
    unsupported: list[str] = []
    for group in command.groups:
        kind = group.filter
        key = "SELECTED" if kind.is_selected else kind.value
        if not kind.takes_names and key in seen:
            raise BadSyntax(f"filter {kind.value} given twice")
        seen.add(key)
        names += len(group.mailboxes)
        events = set(group.events)
        unsupported += [event for event in group.events if event not in SUPPORTED_EVENTS]
        # RFC 5465 §5: MessageNew and MessageExpunge come together; FlagChange needs both.
        if ("MessageNew" in events) != ("MessageExpunge" in events):
            raise BadSyntax("MessageNew and MessageExpunge must be given together")
        if "FlagChange" in events and "MessageNew" not in events:
            raise BadSyntax("FlagChange needs MessageNew and MessageExpunge")
        if group.fetch_attributes and not kind.is_selected:
            raise BadSyntax("fetch attributes are for SELECTED filters only")  # §5.1
        if kind.is_selected and events & MAILBOX_EVENTS:
            raise BadSyntax("SELECTED takes message events only")
    if names > MAX_NOTIFY_MAILBOXES:
        raise Refused(f"at most {MAX_NOTIFY_MAILBOXES} mailboxes per NOTIFY", code="LIMIT")
    return unsupported


def _is_watched(ctx: Context, state: NotifyState, box: Mailbox) -> bool:
    if ctx.selected is not None and ctx.selected.mailbox_id == box.id:
        return False
    return state.group_for(box.name, "MessageNew") is not None


async def _render_status(ctx: Context, box: Mailbox) -> bytes:
    counts = await ctx.runtime.store.mailbox_counts(box.id)
    items = [("MESSAGES", counts.messages), ("UIDNEXT", box.uidnext),
             ("UIDVALIDITY", box.uidvalidity), ("UNSEEN", counts.unseen)]
    if ctx.is_condstore:  # RFC 5465 §5.2 with RFC 7162
        items.append(("HIGHESTMODSEQ", box.highest_modseq))
    return render_status(box.name, items, is_utf8=ctx.is_utf8)


# -- sending -----------------------------------------------------------------------------------
async def send_notifications(ctx: Context, *, is_between_commands: bool) -> None:
    """Report what NOTIFY asked for and the feed says changed (the session drained it)."""
    state = ctx.notify
    if not isinstance(state, NotifyState):
        return
    if state.is_overflow:
        ctx.notify = None  # RFC 5465 §5.8: as if NOTIFY NONE
        await ctx.write(render_untagged_status(
            "OK", "too many changes at once; NOTIFY is off", "NOTIFICATIONOVERFLOW"))
        return
    pending, state.pending = state.pending, {}
    chunks: list[bytes] = []
    for mailbox_id, kinds in pending.items():
        if mailbox_id == SUBSCRIPTIONS:
            chunks += await _subscription_changes(ctx, state)
        elif mailbox_id == SERVER_METADATA:
            chunks += _metadata_change(ctx, state, None, kinds)
        else:
            chunks += await _mailbox_changes(ctx, state, mailbox_id, kinds)
    if chunks:
        await ctx.write(b"".join(chunks))
    group = state.selected_group
    if is_between_commands and group is not None and group.events:
        # RFC 5465 §6: SELECTED reports expunges at once, SELECTED-DELAYED when allowed.
        is_delayed = group.filter is MailboxFilter.SELECTED_DELAYED
        await ctx.send_updates(may_expunge=not is_delayed)
    await _fetch_new(ctx, state)


async def _mailbox_changes(ctx: Context, state: NotifyState, mailbox_id: int,
                           kinds: set[str]) -> list[bytes]:  # fmt: skip
    box = await ctx.runtime.store.get_mailbox_by_id(mailbox_id)
    out = []
    if "mailbox" in kinds or (box is not None and mailbox_id not in state.names):
        out += _name_change(ctx, state, mailbox_id, box)
    if box is not None and "metadata" in kinds:
        out += _metadata_change(ctx, state, box.name, kinds)
    is_selected = ctx.selected is not None and ctx.selected.mailbox_id == mailbox_id
    if box is None or is_selected or not kinds & _MESSAGE_KINDS:
        return out
    event = "MessageNew" if kinds & {"append", "expunge"} else "FlagChange"
    if state.group_for(box.name, event) is not None:
        out.append(await _render_status(ctx, box))
    return out


def _name_change(ctx: Context, state: NotifyState, mailbox_id: int,
                 box: Mailbox | None) -> list[bytes]:  # fmt: skip
    """RFC 5465 §5.4: LIST for a created, deleted or renamed mailbox."""
    old = state.names.get(mailbox_id)
    new = None if box is None else box.name
    if old == new:
        return []
    if new is None:
        del state.names[mailbox_id]
    else:
        state.names[mailbox_id] = new
    if not any(name is not None and state.group_for(name, "MailboxName") is not None
               for name in (old, new)):  # fmt: skip
        return []
    utf8 = ctx.is_utf8
    if new is None:
        assert old is not None
        return [render_list(["\\NonExistent"], SEPARATOR, old, is_utf8=utf8)]
    extended = [] if old is None else [("OLDNAME", [mailbox_value(old, is_utf8=utf8)])]
    attributes = ["\\Subscribed"] if new in state.subscribed else []
    return [render_list(attributes, SEPARATOR, new, extended, is_utf8=utf8)]


def _metadata_change(ctx: Context, state: NotifyState, name: str | None,
                     kinds: set[str]) -> list[bytes]:  # fmt: skip
    """RFC 5465 §5.6-§5.7: `* METADATA mailbox entry ...` (RFC 5464 §4.4.2), for a
    mailbox (`name`) or the server (None, mailbox "")."""
    entries = sorted(kind for kind in kinds if kind.startswith("/"))
    if name is None:
        is_wanted = any("ServerMetadataChange" in group.events for group in state.groups)
    else:
        is_wanted = state.group_for(name, "MailboxMetadataChange") is not None
    if not entries or not is_wanted:
        return []
    values = [Atom(entry) if is_atom_text(entry) else entry for entry in entries]
    mailbox = mailbox_value(name or "", is_utf8=ctx.is_utf8)
    return [render_untagged(Atom("METADATA"), mailbox, *values, is_utf8=ctx.is_utf8)]


async def publish_session_change(ctx: Context, command: Command) -> None:
    """After a command that succeeded: publish what the store's feed does not carry
    (subscriptions, METADATA entries) for the NOTIFY of the account's other sessions."""
    if isinstance(command, Subscribe | Unsubscribe):
        change = Change(ctx.account_id, SUBSCRIPTIONS, frozenset({"subscription"}))
    elif isinstance(command, SetMetadata):
        mailbox_id = SERVER_METADATA
        if command.mailbox:
            box = await ctx.runtime.store.get_mailbox(ctx.account_id, command.mailbox)
            if box is None:
                return
            mailbox_id = box.id
        entries = {entry for entry, _ in command.values if entry.startswith("/")}
        change = Change(ctx.account_id, mailbox_id, frozenset({"metadata", *entries}))
    else:
        return
    ctx.runtime.feed.publish(change)


async def _subscription_changes(ctx: Context, state: NotifyState) -> list[bytes]:
    """RFC 5465 §5.5: LIST with or without \\Subscribed for each name that changed."""
    now = set(await ctx.runtime.store.list_subscriptions(ctx.account_id))
    before, state.subscribed = state.subscribed, now
    out = []
    for name in sorted(now ^ before):
        if state.group_for(name, "SubscriptionChange") is not None:
            attributes = ["\\Subscribed"] if name in now else []
            out.append(render_list(attributes, SEPARATOR, name, is_utf8=ctx.is_utf8))
    return out


async def _fetch_new(ctx: Context, state: NotifyState) -> None:
    """RFC 5465 §5.1: MessageNew's fetch attributes, for messages new since last time."""
    view = ctx.selected
    group = state.selected_group
    if view is None or group is None or not group.fetch_attributes:
        state.fetch_mark = None
        return
    last = view.uids[-1] if view.uids else 0
    mark, state.fetch_mark = state.fetch_mark, (view.mailbox_id, last)
    if mark is None or mark[0] != view.mailbox_id:
        return  # a newly selected mailbox: SELECT told the client what is there
    new = view.uids[bisect.bisect_right(view.uids, mark[1]) :]
    if new:
        await view.load_tables(ctx.runtime.store)
        fetch = Fetch("*", SequenceSet.from_values(new), group.fetch_attributes, is_uid=True)
        await handle_fetch(ctx, fetch)


SPECS = (
    CommandSpec(Notify, ("NOTIFY",), handle_notify, AUTHENTICATED, needs_view_tables=False,
                capabilities=("NOTIFY",)),
)
