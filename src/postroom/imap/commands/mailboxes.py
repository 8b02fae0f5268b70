"""CREATE DELETE RENAME SUBSCRIBE UNSUBSCRIBE LIST LSUB STATUS (RFC 9051 §6.3.4-§6.3.11;
RFC 5258 LIST-EXTENDED, RFC 5819 LIST-STATUS, RFC 6154 SPECIAL-USE, RFC 3348 CHILDREN).

Owns mailbox-name semantics on top of the store: the hierarchy delimiter "/", LIST
pattern matching (`*` crosses levels, `%` does not; imap/wire/patterns.py), the
attributes a LIST line carries, STATUS items, and the limits of issue 25.

Invariants:
- Every LIST line of a mailbox or parent carries \\HasChildren or \\HasNoChildren and the
  special-use attribute (clients such as Thunderbird read them from plain LIST too);
  \\Subscribed only when asked for (RETURN (SUBSCRIBED) or the SUBSCRIBED selection
  option). A subscribed name with no mailbox and nothing below is `(\\Subscribed
  \\NonExistent)` (RFC 5258 §5 example 1).
- RECURSIVEMATCH: CHILDINFO only for a name with a subscribed descendant that the
  patterns do not match (RFC 5258 §3.5, §5 example 9). LSUB with `%` lists unsubscribed
  levels above subscribed names as \\Noselect (RFC 3501 §6.3.9).
- In-process state per mailbox (\\Recent claims) is keyed by `Mailbox.object_id`, which
  is never reused; DELETE drops the mailbox's claims. EXAMINE claims none.
- A parent that exists only as part of a deeper name is listed \\NonExistent \\Noselect
  when a `%` pattern stops at its level (RFC 9051 §6.3.9, RFC 5258 §3).
- DELETE refuses a mailbox with children (NO [HASCHILDREN], RFC 9051 §7.1): postroom
  keeps no message-less \\Noselect placeholders.
- Limits (NO [LIMIT], RFC 9051 §7.1): a name created, renamed to (each moved child's new
  name too) or subscribed keeps MAX_MAILBOX_NAME_LENGTH (UTF-8 bytes of the full name)
  and MAX_MAILBOX_DEPTH; an account holds at most MAX_MAILBOXES_PER_ACCOUNT mailboxes
  (parents CREATE makes count) and as many subscriptions. Names already stored past the
  limits (older data) can still be listed, selected, renamed shorter and deleted. Two
  concurrent CREATEs may each pass the count check: the limit can be passed by the
  number of sessions racing, never by a loop.
- LIST is O(total length of the names + n log n): parents come from one walk up each
  name that stops at the first parent already seen, matching never backtracks, the
  pattern is capped (MAX_PATTERN_BYTES, MAX_PATTERN_WILDCARDS), and the loop yields to
  other sessions every LIST_BATCH names.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

from postroom.accounts.mailboxlimits import MailboxLimits, name_problem
from postroom.errors import BadSyntax, Refused
from postroom.imap.commands.context import Context, Done
from postroom.imap.commands.spec import AUTHENTICATED, CommandSpec
from postroom.imap.recent import count_unclaimed, forget_mailbox, mailbox_key
from postroom.imap.wire.commands.mailboxes import (
    Create,
    Delete,
    List,
    Lsub,
    Rename,
    Status,
    Subscribe,
    Unsubscribe,
)
from postroom.imap.wire.connection import ConnectionState
from postroom.imap.wire.patterns import MailboxPattern, pattern_problem
from postroom.imap.wire.responses import Atom, Value, render_list, render_status
from postroom.store.api import Mailbox, SpecialUse
from postroom.store.errors import AlreadyExists

SEPARATOR = "/"
LIST_BATCH = 200  # names matched between two yields to the event loop
_SPECIAL_USES = {use.value.upper(): use for use in SpecialUse}


def _clean_name(name: str) -> str:
    """RFC 9051 §6.3.4: a trailing delimiter only says "will have children"."""
    name = name.rstrip(SEPARATOR) if name != SEPARATOR else name
    if not name or any(not level for level in name.split(SEPARATOR)):
        raise Refused(f"invalid mailbox name {name!r}", code="CANNOT")
    return "INBOX" if name.isascii() and name.upper() == "INBOX" else name


def _limits(ctx: Context) -> MailboxLimits:
    return MailboxLimits.from_config(ctx.runtime.config)


def _check_name(ctx: Context, name: str) -> None:
    problem = name_problem(name, _limits(ctx))
    if problem is not None:
        raise Refused(problem, code="LIMIT")


def _check_room(ctx: Context, present: int, adding: int) -> None:
    limit = _limits(ctx).mailboxes
    if adding and present + adding > limit:
        raise Refused(f"at most {limit} mailboxes per account (MAX_MAILBOXES_PER_ACCOUNT)",
                      code="LIMIT")  # fmt: skip


def _require_usable(is_usable: bool, code: str = "NONEXISTENT") -> None:
    """A name no mailbox can have (wire/commands/mailboxes.py) names none: NO, not BAD."""
    if not is_usable:
        raise Refused("no mailbox by that name", code=code)


async def _existing(ctx: Context, name: str) -> Mailbox:
    mailbox = await ctx.runtime.store.get_mailbox(ctx.account_id, name)
    if mailbox is None:
        raise Refused(f"no mailbox {name}", code="NONEXISTENT")
    return mailbox


def _missing_parents(name: str, present: set[str]) -> list[str]:
    """RFC 9051 §6.3.4: superior names that must be created for `name` to exist."""
    levels = name.split(SEPARATOR)
    parents = (SEPARATOR.join(levels[:depth]) for depth in range(1, len(levels)))
    return [parent for parent in parents if parent not in present]


async def _create_parents(ctx: Context, parents: list[str]) -> None:
    for parent in parents:
        with contextlib.suppress(AlreadyExists):  # another session was quicker
            await ctx.runtime.store.create_mailbox(ctx.account_id, parent)


def _special_use(uses: tuple[str, ...]) -> SpecialUse | None:
    if not uses:
        return None
    if len(uses) > 1 or uses[0].upper() not in _SPECIAL_USES:
        raise Refused("unsupported special-use attribute", code="USEATTR")  # RFC 6154 §3
    return _SPECIAL_USES[uses[0].upper()]


async def _names(ctx: Context) -> set[str]:
    return {box.name for box in await ctx.runtime.store.list_mailboxes(ctx.account_id)}


async def handle_create(ctx: Context, command: Create) -> Done:
    _require_usable(command.is_name_usable, "CANNOT")
    name = _clean_name(command.mailbox)
    use = _special_use(command.special_use)
    if name == "INBOX":
        raise Refused("INBOX always exists", code="ALREADYEXISTS")
    _check_name(ctx, name)  # before anything is created: parents are shorter and shallower
    present = await _names(ctx)
    if name in present:
        raise AlreadyExists(f"mailbox {name} already exists")
    parents = _missing_parents(name, present)
    _check_room(ctx, len(present), len(parents) + 1)
    await _create_parents(ctx, parents)
    created = await ctx.runtime.store.create_mailbox(ctx.account_id, name, use)
    # RFC 8474 §4.1: the new mailbox's MAILBOXID in the tagged OK.
    return Done("CREATE completed", "MAILBOXID", ([Atom(created.object_id)],))


async def handle_delete(ctx: Context, command: Delete) -> Done:
    _require_usable(command.is_name_usable)
    mailbox = await _existing(ctx, _clean_name(command.mailbox))
    names = await _names(ctx)
    if any(name.startswith(mailbox.name + SEPARATOR) for name in names):
        raise Refused("delete the mailboxes inside it first", code="HASCHILDREN")
    await ctx.runtime.store.delete_mailbox(mailbox.id)
    forget_mailbox(ctx.runtime.store, mailbox)
    if ctx.selected is not None and ctx.selected.mailbox_id == mailbox.id:
        ctx.selected = None
        ctx.state = ConnectionState.AUTHENTICATED
    return Done("DELETE completed")


def _check_moved_children(ctx: Context, old: str, new: str, present: Iterable[str]) -> None:
    """RENAME moves the inferiors too: each one's new name must keep the limits."""
    prefix = old + SEPARATOR
    for name in present:
        if name.startswith(prefix):
            _check_name(ctx, new + name[len(old):])


async def handle_rename(ctx: Context, command: Rename) -> Done:
    _require_usable(command.is_name_usable)
    _require_usable(command.is_new_name_usable, "CANNOT")
    mailbox = await _existing(ctx, _clean_name(command.mailbox))
    new_name = _clean_name(command.new_name)
    present = await _names(ctx)
    if new_name == "INBOX" or new_name in present:
        raise Refused(f"{new_name} already exists", code="ALREADYEXISTS")
    _check_name(ctx, new_name)
    if mailbox.name != "INBOX":  # RFC 9051 §6.3.5: renaming INBOX moves no inferiors
        _check_moved_children(ctx, mailbox.name, new_name, present)
    parents = _missing_parents(new_name, present)
    # Renaming INBOX makes a new mailbox and leaves INBOX in place.
    _check_room(ctx, len(present), len(parents) + (mailbox.name == "INBOX"))
    await _create_parents(ctx, parents)
    await ctx.runtime.store.rename_mailbox(mailbox.id, new_name)
    return Done("RENAME completed")


async def handle_subscribe(ctx: Context, command: Subscribe | Unsubscribe) -> Done:
    is_subscribe = isinstance(command, Subscribe)
    _require_usable(command.is_name_usable, "CANNOT" if is_subscribe else "NONEXISTENT")
    name = _clean_name(command.mailbox)
    store = ctx.runtime.store
    if is_subscribe:
        # Subscriptions outlive mailboxes (RFC 9051 §6.3.7), so they are limited on
        # their own: same name rules, same count as mailboxes.
        _check_name(ctx, name)
        subscribed = await store.list_subscriptions(ctx.account_id)
        limit = _limits(ctx).mailboxes
        if len(subscribed) >= limit and name not in subscribed:
            raise Refused(f"at most {limit} subscriptions per account"
                          " (MAX_MAILBOXES_PER_ACCOUNT)", code="LIMIT")  # fmt: skip
    await store.set_subscribed(ctx.account_id, name, is_subscribe)
    return Done(f"{'SUBSCRIBE' if is_subscribe else 'UNSUBSCRIBE'} completed")


# -- LIST ------------------------------------------------------------------------------------
def compile_patterns(ctx: Context, reference: str, patterns: Iterable[str]
                     ) -> list[MailboxPattern]:  # fmt: skip
    """RFC 9051 §6.3.9 patterns, refused (NO [LIMIT]) past the pattern caps."""
    compiled = []
    for pattern in patterns:
        problem = pattern_problem(reference, pattern,
                                  name_limit=_limits(ctx).name_length)  # fmt: skip
        if problem is not None:
            raise Refused(problem, code="LIMIT")
        compiled.append(MailboxPattern.compile(reference, pattern))
    return compiled


def _parents(names: Iterable[str]) -> set[str]:
    """Every proper superior of every name. A walk up a name stops at the first parent
    already found (its own superiors are in already), so a name costs one slice of itself
    plus one per parent never seen before: linear in the names' total length (and in the
    parents produced), however deep they are, where joining every prefix of every name
    was cubic in the depth of a chain."""
    found: set[str] = set()
    for name in names:
        end = name.rfind(SEPARATOR)
        while end > 0:
            parent = name[:end]
            if parent in found:
                break
            found.add(parent)
            end = name.rfind(SEPARATOR, 0, end)
    return found


def _matches(patterns: list[MailboxPattern], name: str) -> bool:
    return any(pattern.matches(name) for pattern in patterns)


def _percent_patterns(command: List) -> list[MailboxPattern]:
    """RFC 3501 §6.3.8: only a pattern ending in `%` lists levels that do not exist."""
    return [MailboxPattern.compile(command.reference, pattern)
            for pattern in command.patterns if pattern.endswith("%")]  # fmt: skip


class _Listing:
    """The facts one LIST/LSUB needs, read once."""

    def __init__(self, mailboxes: list[Mailbox], subscribed: list[str]) -> None:
        self.mailboxes = {box.name: box for box in mailboxes}
        self.subscribed = set(subscribed)
        self.parents = _parents(self.mailboxes)
        self.subscribed_parents = _parents(self.subscribed)
        self.childinfo: set[str] = set()  # see `find_childinfo`

    def has_children(self, name: str) -> bool:
        return name in self.parents

    def find_childinfo(self, patterns: list[MailboxPattern]) -> None:
        """RFC 5258 §3.5, §5 example 9 (RECURSIVEMATCH): a name gets CHILDINFO, and is
        listed even when not subscribed itself, when a subscribed descendant would not be
        listed on its own because it does not match the patterns. A parent whose
        subscribed descendants all match is left out: they appear themselves."""
        self.childinfo = _parents(name for name in self.subscribed
                                  if not _matches(patterns, name))  # fmt: skip


def _attributes(listing: _Listing, name: str, command: List) -> list[str]:
    box = listing.mailboxes.get(name)
    wants_subscribed = "SUBSCRIBED" in command.return_options | command.selection
    is_subscribed = wants_subscribed and name in listing.subscribed
    if box is None and not listing.has_children(name):
        # Only a name: subscribed after its mailbox was deleted, or a CHILDINFO parent.
        # RFC 5258 §3.4, §5 example 1: `(\Subscribed \NonExistent)`; \NonExistent
        # implies \Noselect and, with nothing below, says all there is.
        return ["\\Subscribed", "\\NonExistent"] if is_subscribed else ["\\NonExistent"]
    attributes: list[str] = []
    if box is None:
        attributes += ["\\NonExistent", "\\Noselect"]
    attributes.append("\\HasChildren" if listing.has_children(name) else "\\HasNoChildren")
    if is_subscribed:
        attributes.append("\\Subscribed")
    if box is not None and box.special_use is not None:
        attributes.append(box.special_use.value)
    return attributes


def _list_order(names: Iterable[str]) -> list[str]:
    """INBOX first, then sorted."""
    return sorted(names, key=lambda name: (name != "INBOX", name))


def _candidates(listing: _Listing, command: List) -> list[str]:
    """Names to consider, in LIST order."""
    if "SUBSCRIBED" in command.selection:
        names = set(listing.subscribed)
        if "RECURSIVEMATCH" in command.selection:
            names |= listing.childinfo
    else:
        names = set(listing.mailboxes) | listing.parents
    return _list_order(names)


def _is_selected_by(listing: _Listing, name: str, command: List) -> bool:
    box = listing.mailboxes.get(name)
    if "SPECIAL-USE" in command.selection and (box is None or box.special_use is None):
        return False
    if "SUBSCRIBED" in command.selection:
        # RFC 5258 §3.1: every subscribed name, existing or not; other names only with
        # RECURSIVEMATCH, as a parent with CHILDINFO (§3.5).
        if name in listing.subscribed:
            return True
        return "RECURSIVEMATCH" in command.selection and name in listing.childinfo
    return box is not None or name in listing.parents


async def _read_listing(ctx: Context) -> _Listing:
    store = ctx.runtime.store
    return _Listing(await store.list_mailboxes(ctx.account_id),
                    await store.list_subscriptions(ctx.account_id))  # fmt: skip


async def handle_list(ctx: Context, command: List) -> Done:
    if command.patterns == ("",):
        # RFC 9051 §6.3.9: an empty pattern asks for the delimiter and root.
        await ctx.write(render_list(["\\Noselect"], SEPARATOR, "", is_utf8=ctx.is_utf8))
        return Done("LIST completed")
    patterns = compile_patterns(ctx, command.reference, command.patterns)
    percent = _percent_patterns(command)
    listing = await _read_listing(ctx)
    if "RECURSIVEMATCH" in command.selection:
        listing.find_childinfo(patterns)
    for count, name in enumerate(_candidates(listing, command), 1):
        if count % LIST_BATCH == 0:
            await asyncio.sleep(0)  # a long listing must not starve other sessions
        if not _matches(patterns, name) or not _is_selected_by(listing, name, command):
            continue
        is_placeholder = not (name in listing.mailboxes or name in listing.subscribed
                              or name in listing.childinfo)  # fmt: skip
        if is_placeholder and not _matches(percent, name):
            continue
        await _list_one(ctx, listing, name, command)
    return Done("LIST completed")


async def _list_one(ctx: Context, listing: _Listing, name: str, command: List) -> None:
    extended: list[tuple[str, Value]] = []
    if "RECURSIVEMATCH" in command.selection and name in listing.childinfo:
        extended.append(("CHILDINFO", ["SUBSCRIBED"]))  # RFC 5258 §3.5
    attributes = _attributes(listing, name, command)
    await ctx.write(render_list(attributes, SEPARATOR, name, extended, is_utf8=ctx.is_utf8))
    box = listing.mailboxes.get(name)
    if command.status_items and box is not None:  # RFC 5819 §2
        items = await _status_items(ctx, box, command.status_items)
        await ctx.write(render_status(name, items, is_utf8=ctx.is_utf8))


async def handle_lsub(ctx: Context, command: Lsub) -> Done:
    """IMAP4rev1 LSUB (RFC 3501 §6.3.9): subscribed names matching the pattern; with `%`,
    also each unsubscribed level above a subscribed name that the pattern stops at, as
    \\Noselect (there it means "not subscribed, but something below is")."""
    pattern = compile_patterns(ctx, command.reference, (command.pattern,))[0]
    listing = await _read_listing(ctx)
    names = set(listing.subscribed)
    if "%" in command.pattern:
        names |= listing.subscribed_parents
    for count, name in enumerate(_list_order(names), 1):
        if count % LIST_BATCH == 0:
            await asyncio.sleep(0)  # must not starve other sessions
        if pattern.matches(name):
            is_selectable = name in listing.subscribed and name in listing.mailboxes
            attributes = [] if is_selectable else ["\\Noselect"]
            await ctx.write(render_list(attributes, SEPARATOR, name, command="LSUB",
                                        is_utf8=ctx.is_utf8))  # fmt: skip
    return Done("LSUB completed")


# -- STATUS ----------------------------------------------------------------------------------
async def _status_items(ctx: Context, box: Mailbox, wanted: tuple[str, ...]
                        ) -> list[tuple[str, Value]]:  # fmt: skip
    store = ctx.runtime.store
    box = await store.get_mailbox_by_id(box.id) or box
    counts = await store.mailbox_counts(box.id)
    rows = None
    if "DELETED-STORAGE" in wanted:
        rows = await store.list_messages(box.id)
    values: dict[str, Value] = {
        "MESSAGES": counts.messages, "UIDNEXT": box.uidnext, "UIDVALIDITY": box.uidvalidity,
        "UNSEEN": counts.unseen, "HIGHESTMODSEQ": box.highest_modseq,
        "APPENDLIMIT": ctx.runtime.config.message_size_limit,
    }  # fmt: skip
    if "MAILBOXID" in wanted and box.object_id:  # RFC 8474 §4.2
        values["MAILBOXID"] = [Atom(box.object_id)]
    if "SIZE" in wanted:  # RFC 8438 §3: the mailbox's octets, from the counters (0008)
        values["SIZE"] = (await store.mailbox_usage(box.id)).mailbox_size
    if {"DELETED", "RECENT"} & set(wanted):
        columns = await store.list_flag_columns(box.id)
        # RFC 9051 §6.3.11 DELETED: the messages with \\Deleted.
        values["DELETED"] = sum(1 for flags in columns.flags if "\\Deleted" in flags)
        values["RECENT"] = _count_recent(ctx, box, columns.uids)
    if rows is not None:
        # RFC 9208 §4.2.4: what EXPUNGE would free, in the STORAGE unit (1024 octets).
        freed = sum(row.size for row in rows if "\\Deleted" in row.flags)
        values["DELETED-STORAGE"] = -(-freed // 1024)
    return [(item, values[item]) for item in wanted if item in values]


def _count_recent(ctx: Context, box: Mailbox, uids: list[int]) -> int:
    """STATUS RECENT as SELECT would say it: the messages no session has claimed yet;
    for the mailbox this session has selected, those it holds as \\Recent too."""
    view = ctx.selected
    unclaimed = count_unclaimed(ctx.runtime.store, box, uids)
    if view is None or mailbox_key(view.mailbox) != mailbox_key(box) or view.is_read_only:
        return unclaimed
    return unclaimed + sum(1 for uid in view.recent if view.contains(uid))


async def handle_status(ctx: Context, command: Status) -> Done:
    _require_usable(command.is_name_usable)
    name = _clean_name(command.mailbox)
    box = await _existing(ctx, name)
    if "RECENT" in command.items and ctx.is_rev2:
        raise BadSyntax("RECENT is not a STATUS item in IMAP4rev2")  # RFC 9051 §6.3.11
    if "HIGHESTMODSEQ" in command.items:
        ctx.enable_condstore()  # RFC 7162 §3.1
    items = await _status_items(ctx, box, command.items)
    await ctx.write(render_status(box.name, items, is_utf8=ctx.is_utf8))
    return Done("STATUS completed")


SPECS = (
    CommandSpec(Create, ("CREATE",), handle_create, AUTHENTICATED, needs_view_tables=False,
                capabilities=("CREATE-SPECIAL-USE",)),
    CommandSpec(Delete, ("DELETE",), handle_delete, AUTHENTICATED, needs_view_tables=False),
    CommandSpec(Rename, ("RENAME",), handle_rename, AUTHENTICATED, needs_view_tables=False),
    CommandSpec(Subscribe, ("SUBSCRIBE",), handle_subscribe, AUTHENTICATED,
                needs_view_tables=False),
    CommandSpec(Unsubscribe, ("UNSUBSCRIBE",), handle_subscribe, AUTHENTICATED,
                needs_view_tables=False),
    CommandSpec(List, ("LIST",), handle_list, AUTHENTICATED, needs_view_tables=False,
                capabilities=("CHILDREN", "SPECIAL-USE", "LIST-EXTENDED", "LIST-STATUS")),
    CommandSpec(Lsub, ("LSUB",), handle_lsub, AUTHENTICATED, needs_view_tables=False),
    CommandSpec(Status, ("STATUS",), handle_status, AUTHENTICATED, needs_view_tables=False,
                capabilities=("STATUS=SIZE",)),  # RFC 8438
)  # fmt: skip
