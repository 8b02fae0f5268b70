"""CREATE DELETE RENAME SUBSCRIBE UNSUBSCRIBE LIST LSUB STATUS (RFC 9051 §6.3.4-§6.3.11;
RFC 5258 LIST-EXTENDED, RFC 5819 LIST-STATUS, RFC 6154 SPECIAL-USE, RFC 3348 CHILDREN).

Owns mailbox-name semantics on top of the store: the hierarchy delimiter "/", LIST
pattern matching (`*` crosses levels, `%` does not), the attributes a LIST line carries,
and STATUS items.

Invariants:
- Every LIST line carries \\HasChildren or \\HasNoChildren and the special-use attribute
  (clients such as Thunderbird read them from plain LIST too); \\Subscribed only when
  asked for (RETURN (SUBSCRIBED) or the SUBSCRIBED selection option).
- A parent that exists only as part of a deeper name is listed \\NonExistent \\Noselect
  when a `%` pattern stops at its level (RFC 9051 §6.3.9, RFC 5258 §3).
- DELETE refuses a mailbox with children (NO [HASCHILDREN], RFC 9051 §7.1): postroom
  keeps no message-less \\Noselect placeholders.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable

from postroom.errors import BadSyntax, Refused
from postroom.imap.commands.context import Context, Done
from postroom.imap.selected import count_unclaimed
from postroom.imap.wire import commands as c
from postroom.imap.wire.connection import ConnectionState
from postroom.imap.wire.responses import Value, render_list, render_status
from postroom.store.api import Mailbox, SpecialUse
from postroom.store.errors import AlreadyExists

SEPARATOR = "/"
_SPECIAL_USES = {use.value.upper(): use for use in SpecialUse}


def _clean_name(name: str) -> str:
    """RFC 9051 §6.3.4: a trailing delimiter only says "will have children"."""
    name = name.rstrip(SEPARATOR) if name != SEPARATOR else name
    if not name or any(not level for level in name.split(SEPARATOR)):
        raise Refused(f"invalid mailbox name {name!r}", code="CANNOT")
    return "INBOX" if name.upper() == "INBOX" else name


async def _existing(ctx: Context, name: str) -> Mailbox:
    mailbox = await ctx.runtime.store.get_mailbox(ctx.account_id, name)
    if mailbox is None:
        raise Refused(f"no mailbox {name}", code="NONEXISTENT")
    return mailbox


async def _create_parents(ctx: Context, name: str) -> None:
    """RFC 9051 §6.3.4: create superior names needed for `name` to exist."""
    levels = name.split(SEPARATOR)
    store = ctx.runtime.store
    for depth in range(1, len(levels)):
        parent = SEPARATOR.join(levels[:depth])
        if await store.get_mailbox(ctx.account_id, parent) is None:
            with contextlib.suppress(AlreadyExists):  # another session was quicker
                await store.create_mailbox(ctx.account_id, parent)


def _special_use(uses: tuple[str, ...]) -> SpecialUse | None:
    if not uses:
        return None
    if len(uses) > 1 or uses[0].upper() not in _SPECIAL_USES:
        raise Refused("unsupported special-use attribute", code="USEATTR")  # RFC 6154 §3
    return _SPECIAL_USES[uses[0].upper()]


async def handle_create(ctx: Context, command: c.Create) -> Done:
    name = _clean_name(command.mailbox)
    use = _special_use(command.special_use)
    if name == "INBOX":
        raise Refused("INBOX always exists", code="ALREADYEXISTS")
    await _create_parents(ctx, name)
    await ctx.runtime.store.create_mailbox(ctx.account_id, name, use)
    return Done("CREATE completed")


async def handle_delete(ctx: Context, command: c.Delete) -> Done:
    mailbox = await _existing(ctx, _clean_name(command.mailbox))
    names = [box.name for box in await ctx.runtime.store.list_mailboxes(ctx.account_id)]
    if any(name.startswith(mailbox.name + SEPARATOR) for name in names):
        raise Refused("delete the mailboxes inside it first", code="HASCHILDREN")
    await ctx.runtime.store.delete_mailbox(mailbox.id)
    if ctx.selected is not None and ctx.selected.mailbox_id == mailbox.id:
        ctx.selected = None
        ctx.state = ConnectionState.AUTHENTICATED
    return Done("DELETE completed")


async def handle_rename(ctx: Context, command: c.Rename) -> Done:
    mailbox = await _existing(ctx, _clean_name(command.mailbox))
    new_name = _clean_name(command.new_name)
    if new_name == "INBOX" or await ctx.runtime.store.get_mailbox(ctx.account_id, new_name):
        raise Refused(f"{new_name} already exists", code="ALREADYEXISTS")
    await _create_parents(ctx, new_name)
    await ctx.runtime.store.rename_mailbox(mailbox.id, new_name)
    return Done("RENAME completed")


async def handle_subscribe(ctx: Context, command: c.Subscribe | c.Unsubscribe) -> Done:
    is_subscribe = isinstance(command, c.Subscribe)
    name = _clean_name(command.mailbox)
    await ctx.runtime.store.set_subscribed(ctx.account_id, name, is_subscribe)
    return Done(f"{'SUBSCRIBE' if is_subscribe else 'UNSUBSCRIBE'} completed")


# -- LIST ------------------------------------------------------------------------------------
def pattern_regex(reference: str, pattern: str) -> re.Pattern[str]:
    """RFC 9051 §6.3.9: reference and pattern joined; `*` any, `%` any but the delimiter."""
    full = reference + pattern
    pieces = []
    for char in full:
        if char == "*":
            pieces.append(".*")
        elif char == "%":
            pieces.append("[^/]*")
        else:
            pieces.append(re.escape(char))
    if full.upper().startswith("INBOX"):  # INBOX is case-insensitive, its children are not
        pieces[:5] = ["(?i:INBOX)"]
    return re.compile("".join(pieces) + r"\Z", re.DOTALL)


def _parents(names: Iterable[str]) -> set[str]:
    found = set()
    for name in names:
        levels = name.split(SEPARATOR)
        for depth in range(1, len(levels)):
            found.add(SEPARATOR.join(levels[:depth]))
    return found


def _matches(patterns: list[re.Pattern[str]], name: str) -> bool:
    return any(pattern.match(name) for pattern in patterns)


def _percent_patterns(command: c.List) -> list[re.Pattern[str]]:
    """RFC 3501 §6.3.8: only a pattern ending in `%` lists levels that do not exist."""
    return [pattern_regex(command.reference, pattern)
            for pattern in command.patterns if pattern.endswith("%")]  # fmt: skip


class _Listing:
    """The facts one LIST/LSUB needs, read once."""

    def __init__(self, mailboxes: list[Mailbox], subscribed: list[str]) -> None:
        self.mailboxes = {box.name: box for box in mailboxes}
        self.subscribed = set(subscribed)
        self.parents = _parents(self.mailboxes)
        self.subscribed_parents = _parents(self.subscribed)

    def has_children(self, name: str) -> bool:
        return name in self.parents


def _attributes(listing: _Listing, name: str, command: c.List) -> list[str]:
    box = listing.mailboxes.get(name)
    attributes: list[str] = []
    if box is None:
        attributes += ["\\NonExistent", "\\Noselect"]
    attributes.append("\\HasChildren" if listing.has_children(name) else "\\HasNoChildren")
    wants_subscribed = "SUBSCRIBED" in command.return_options | command.selection
    if wants_subscribed and name in listing.subscribed:
        attributes.append("\\Subscribed")
    if box is not None and box.special_use is not None:
        attributes.append(box.special_use.value)
    return attributes


def _candidates(listing: _Listing, command: c.List) -> list[str]:
    """Names to consider, in LIST order: INBOX first, then sorted."""
    if "SUBSCRIBED" in command.selection:
        names = set(listing.subscribed)
        if "RECURSIVEMATCH" in command.selection:
            names |= listing.subscribed_parents
    else:
        names = set(listing.mailboxes) | listing.parents
    return sorted(names, key=lambda name: (name != "INBOX", name))


def _is_selected_by(listing: _Listing, name: str, command: c.List) -> bool:
    box = listing.mailboxes.get(name)
    if "SPECIAL-USE" in command.selection and (box is None or box.special_use is None):
        return False
    if "SUBSCRIBED" in command.selection and name not in listing.subscribed:
        # Only with RECURSIVEMATCH: a parent of a subscribed name (RFC 5258 §3.5).
        return "RECURSIVEMATCH" in command.selection
    return box is not None or name in listing.parents


async def handle_list(ctx: Context, command: c.List) -> Done:
    if command.patterns == ("",):
        # RFC 9051 §6.3.9: an empty pattern asks for the delimiter and root.
        await ctx.write(render_list(["\\Noselect"], SEPARATOR, "", is_utf8=ctx.is_utf8))
        return Done("LIST completed")
    store = ctx.runtime.store
    listing = _Listing(await store.list_mailboxes(ctx.account_id),
                       await store.list_subscriptions(ctx.account_id))  # fmt: skip
    patterns = [pattern_regex(command.reference, pattern) for pattern in command.patterns]
    percent = _percent_patterns(command)
    for name in _candidates(listing, command):
        if not _matches(patterns, name) or not _is_selected_by(listing, name, command):
            continue
        is_placeholder = name not in listing.mailboxes and name not in listing.subscribed
        if is_placeholder and not _matches(percent, name):
            continue
        await _list_one(ctx, listing, name, command)
    return Done("LIST completed")


async def _list_one(ctx: Context, listing: _Listing, name: str, command: c.List) -> None:
    extended: list[tuple[str, Value]] = []
    if "RECURSIVEMATCH" in command.selection and name in listing.subscribed_parents:
        extended.append(("CHILDINFO", ["SUBSCRIBED"]))  # RFC 5258 §3.5
    attributes = _attributes(listing, name, command)
    await ctx.write(render_list(attributes, SEPARATOR, name, extended, is_utf8=ctx.is_utf8))
    box = listing.mailboxes.get(name)
    if command.status_items and box is not None:  # RFC 5819 §2
        items = await _status_items(ctx, box, command.status_items)
        await ctx.write(render_status(name, items, is_utf8=ctx.is_utf8))


async def handle_lsub(ctx: Context, command: c.Lsub) -> Done:
    """IMAP4rev1 LSUB (RFC 3501 §6.3.9): subscribed names matching the pattern."""
    store = ctx.runtime.store
    listing = _Listing(await store.list_mailboxes(ctx.account_id),
                       await store.list_subscriptions(ctx.account_id))  # fmt: skip
    pattern = pattern_regex(command.reference, command.pattern)
    for name in sorted(listing.subscribed, key=lambda n: (n != "INBOX", n)):
        if pattern.match(name):
            attributes = [] if name in listing.mailboxes else ["\\Noselect"]
            await ctx.write(render_list(attributes, SEPARATOR, name, command="LSUB",
                                        is_utf8=ctx.is_utf8))  # fmt: skip
    return Done("LSUB completed")


# -- STATUS ----------------------------------------------------------------------------------
async def _status_items(ctx: Context, box: Mailbox, wanted: tuple[str, ...]
                        ) -> list[tuple[str, int]]:  # fmt: skip
    store = ctx.runtime.store
    box = await store.get_mailbox_by_id(box.id) or box
    counts = await store.mailbox_counts(box.id)
    rows = None
    if {"DELETED", "RECENT"} & set(wanted):
        rows = await store.list_messages(box.id)
    values: dict[str, int] = {
        "MESSAGES": counts.messages, "UIDNEXT": box.uidnext, "UIDVALIDITY": box.uidvalidity,
        "UNSEEN": counts.unseen, "SIZE": counts.size, "HIGHESTMODSEQ": box.highest_modseq,
        "APPENDLIMIT": ctx.runtime.config.message_size_limit,
    }  # fmt: skip
    if rows is not None:
        values["DELETED"] = sum(1 for row in rows if "\\Deleted" in row.flags)
        values["RECENT"] = count_unclaimed(store, box.id, (row.uid for row in rows))
    return [(item, values[item]) for item in wanted if item in values]


async def handle_status(ctx: Context, command: c.Status) -> Done:
    name = _clean_name(command.mailbox)
    box = await _existing(ctx, name)
    if "RECENT" in command.items and ctx.is_rev2:
        raise BadSyntax("RECENT is not a STATUS item in IMAP4rev2")  # RFC 9051 §6.3.11
    if "HIGHESTMODSEQ" in command.items:
        ctx.enable_condstore()  # RFC 7162 §3.1
    items = await _status_items(ctx, box, command.items)
    await ctx.write(render_status(box.name, items, is_utf8=ctx.is_utf8))
    return Done("STATUS completed")
