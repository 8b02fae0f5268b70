"""JMAP Mailboxes (RFC 8621 §2): what a Mailbox is over the store's mailboxes, and
Mailbox/get, Mailbox/changes, Mailbox/query and Mailbox/queryChanges. Mailbox/set lives in
mailboxset.py, which builds on this module; its `register` wires all five.

A Mailbox is a store mailbox: its id is the never-reused `object_id` (so it survives a
rename or a move), its `name` the last level of the full name (hierarchy delimiter "/",
the store's and IMAP's), its `parentId` the mailbox whose full name is the prefix.

Invariants:
- Every parent exists. IMAP CREATE and RENAME make the missing superiors of a name (RFC
  9051 §6.3.4), but Sieve `fileinto :create` and the maildir importer store "a/b" alone;
  IMAP then lists "a" as a \\NonExistent placeholder. JMAP has no placeholders: a Mailbox
  "b" under a null parent would collide with a real top-level "b" (RFC 8621 §2: siblings'
  names are unique) and a rename of it would move it to the top level. So `load_tree`
  creates the missing superiors, as IMAP CREATE would have (unsubscribed, empty), before
  anything is shown; the store then reports them, and the child's new parent, to
  Mailbox/changes. A name with an empty level ("a//b"), which IMAP never makes, is left
  alone: under its direct parent when that exists, else top-level under its full name.
- Roles (§2: one per mailbox, one mailbox per role): INBOX is "inbox"; a special-use
  attribute gives its lower-cased name (RFC 8457 registry); when IMAP gave two mailboxes
  the same attribute, the oldest (lowest row id) has the role, the others none.
- sortOrder is not stored: role mailboxes get a fixed small order (INBOX first), every
  other mailbox ROLELESS_SORT_ORDER, so clients sort those by name (§2).
- Counts (§2) are those Email/get implies: an Email (a blob) counts once per mailbox
  however many copies it has there; it is unread when no copy anywhere has \\Seen or
  \\Draft (its keywords are the union of its copies', emailmeta.py); Threads come from
  jmap/threads.py, and unreadThreads follows §2's trash rule. They cost one read of the
  account's message rows, done only when a count is asked for.
- A state is read before the data it describes (a change in between is reported again
  by the next /changes, never lost).
"""

from __future__ import annotations

import contextlib
import functools
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from postroom.jmap.context import CallContext
from postroom.jmap.core import Call, Response
from postroom.jmap.errors import MethodError, MethodErrorType, invalid_arguments
from postroom.jmap.standard import (
    Comparator,
    Filter,
    FilterOperator,
    Operator,
    compute_query_window,
    parse_changes_args,
    parse_get_args,
    parse_query_args,
    parse_query_changes_args,
    render_changes_response,
    render_get_response,
    render_query_response,
)
from postroom.jmap.threads import thread_ids
from postroom.jmap.types import expect_bool, is_id, optional
from postroom.runtime import Runtime
from postroom.store.api import Mailbox, SpecialUse, Store
from postroom.store.errors import AlreadyExists, CannotCalculateChanges

SEPARATOR = "/"  # the store's hierarchy delimiter (IMAP LIST shows the same)
INBOX = "INBOX"
# RFC 8621 §2 / RFC 8457: a role is a registered mailbox attribute, lower-cased, or inbox.
KNOWN_ROLES = frozenset({"inbox", "all", "archive", "drafts", "flagged", "important", "junk",
                         "sent", "trash", "snoozed", "scheduled", "memos"})
ROLE_OF_USE = {use: use.value[1:].lower() for use in SpecialUse}  # \Sent → "sent"
USE_OF_ROLE = {role: use for use, role in ROLE_OF_USE.items()}
ROLE_SORT_ORDER = {"inbox": 1, "drafts": 2, "sent": 3, "archive": 4, "junk": 5, "trash": 6}
ROLELESS_SORT_ORDER = 10
COUNT_PROPERTIES = ("totalEmails", "unreadEmails", "totalThreads", "unreadThreads")
SERVER_SET = ("id", *COUNT_PROPERTIES, "myRights")
SETTABLE = ("name", "parentId", "role", "sortOrder", "isSubscribed")
PROPERTIES = (*SERVER_SET, *SETTABLE)
_UNREAD_BLOCKERS = frozenset({"\\seen", "\\draft"})  # §2 unreadEmails: no $seen, $draft


def store_name(full_name: str) -> str:
    """The name the store keeps for `full_name` (INBOX in any case is INBOX, as there)."""
    return INBOX if full_name.upper() == INBOX else full_name


def join_name(parent: Mailbox | None, name: str) -> str:
    return name if parent is None else parent.name + SEPARATOR + name


def has_clean_levels(full_name: str) -> bool:
    return all(full_name.split(SEPARATOR))


def missing_superiors(names: Iterable[str]) -> list[str]:
    """The superiors of clean names that are not names themselves, shortest first."""
    present = set(names)
    missing: set[str] = set()
    for name in present:
        if not has_clean_levels(name):
            continue
        end = name.rfind(SEPARATOR)
        while end > 0 and name[:end] not in present and name[:end] not in missing:
            missing.add(name[:end])
            end = name.rfind(SEPARATOR, 0, end)
    return sorted(missing, key=lambda name: (name.count(SEPARATOR), name))


# -- the tree -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Node:
    """One Mailbox as JMAP sees it."""

    box: Mailbox
    parent_id: str | None  # the parent's object_id
    name: str
    role: str | None

    @property
    def id(self) -> str:
        return self.box.object_id

    @property
    def is_inbox(self) -> bool:
        return self.box.name == INBOX

    @property
    def sort_order(self) -> int:
        return ROLE_SORT_ORDER.get(self.role or "", ROLELESS_SORT_ORDER)


def _roles(boxes: Sequence[Mailbox]) -> dict[str, str]:
    """object_id → role; the oldest mailbox of each special use keeps it (§2: unique)."""
    roles: dict[str, str] = {}
    taken: set[str] = set()
    for box in sorted(boxes, key=lambda box: (box.name != INBOX, box.id)):
        role = "inbox" if box.name == INBOX else (
            ROLE_OF_USE[box.special_use] if box.special_use is not None else None)
        if role is not None and role not in taken:
            taken.add(role)
            roles[box.object_id] = role
    return roles


class Tree:
    """An account's Mailboxes, read at one moment."""

    def __init__(self, boxes: Sequence[Mailbox]) -> None:
        by_name = {box.name: box for box in boxes}
        roles = _roles(boxes)
        self.nodes: dict[str, Node] = {}
        self.children: dict[str | None, list[str]] = {}
        for box in boxes:
            superior, _, leaf = box.name.rpartition(SEPARATOR)
            parent = by_name.get(superior) if leaf else None
            node = Node(box, parent.object_id if parent else None,
                        leaf if parent else box.name, roles.get(box.object_id))
            self.nodes[box.object_id] = node
            self.children.setdefault(node.parent_id, []).append(box.object_id)
        self.by_name = by_name

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes.values())

    def get(self, object_id: str) -> Node | None:
        return self.nodes.get(object_id)

    def path(self, object_id: str) -> list[str]:
        """Ids from the top-level ancestor down to `object_id`."""
        path = [object_id]
        parent = self.nodes[object_id].parent_id
        while parent is not None:
            path.append(parent)
            parent = self.nodes[parent].parent_id
        return path[::-1]

    def descendants(self, object_id: str) -> list[Node]:
        found: list[Node] = []
        pending = list(self.children.get(object_id, ()))
        while pending:
            node = self.nodes[pending.pop()]
            found.append(node)
            pending.extend(self.children.get(node.id, ()))
        return found

    def role_holder(self, role: str) -> Node | None:
        return next((node for node in self.nodes.values() if node.role == role), None)


async def _complete_hierarchy(store: Store, account_id: int, boxes: Sequence[Mailbox]) -> bool:
    """Create the missing superiors (see the module invariants); whether any was missing."""
    missing = missing_superiors(box.name for box in boxes)
    for name in missing:
        with contextlib.suppress(AlreadyExists):  # made meanwhile by another session
            await store.create_mailbox(account_id, name)
    return bool(missing)


async def load_tree(store: Store, account_id: int) -> tuple[str, Tree]:
    """The account's state and its Mailboxes as of that state (or newer)."""
    state = await store.jmap_state(account_id)
    boxes = await store.list_mailboxes(account_id)
    if await _complete_hierarchy(store, account_id, boxes):
        state = await store.jmap_state(account_id)
        boxes = await store.list_mailboxes(account_id)
    return state, Tree(boxes)


# -- counts (§2: totalEmails, unreadEmails, totalThreads, unreadThreads) -------------------


@dataclass(slots=True)
class _Email:
    mailbox_ids: set[str]
    flags: set[str]  # of all its copies, lower-cased: keywords as Email/get shows them

    @property
    def is_unread(self) -> bool:  # §2: neither $seen nor $draft
        return not self.flags & _UNREAD_BLOCKERS


@dataclass(frozen=True, slots=True)
class Census:
    """The account's Emails, where each is, and its Thread: what the counts need. An
    Email counts once per mailbox however many copies it has there; an unread Email of a
    Thread makes the Thread unread in every mailbox holding one of its Emails (§2)."""

    emails: dict[str, _Email]
    contents: dict[str, set[str]]  # mailbox object_id → its Emails
    members: dict[str, list[str]]  # thread id → its Emails
    thread_of: dict[str, str]
    trash_id: str | None

    def counts_as_unread(self, blob_id: str, object_id: str) -> bool:
        """§2 unreadThreads: an Email only in the trash counts for the trash alone, and
        the trash counts only Emails in it."""
        email = self.emails[blob_id]
        if not email.is_unread or self.trash_id is None:
            return email.is_unread
        if object_id == self.trash_id:
            return self.trash_id in email.mailbox_ids
        return bool(email.mailbox_ids - {self.trash_id})

    def counts(self, object_id: str) -> dict[str, int]:
        blob_ids = self.contents.get(object_id, set())
        threads = {self.thread_of[blob_id] for blob_id in blob_ids}
        unread_threads = sum(1 for thread in threads if any(
            self.counts_as_unread(member, object_id) for member in self.members[thread]))
        return {"totalEmails": len(blob_ids),
                "unreadEmails": sum(1 for one in blob_ids if self.emails[one].is_unread),
                "totalThreads": len(threads), "unreadThreads": unread_threads}


async def take_census(runtime: Runtime, account_id: int, tree: Tree) -> Census:
    """One read of every message row of the account (the rows of a mailbox cost less to
    list than to look up by Email) and of their Threads."""
    emails: dict[str, _Email] = {}
    contents: dict[str, set[str]] = {}
    for node in tree:
        here = contents[node.id] = set()
        for row in await runtime.store.list_messages(node.box.id):
            email = emails.get(row.blob_id) or emails.setdefault(row.blob_id,
                                                                 _Email(set(), set()))
            email.mailbox_ids.add(node.id)
            email.flags.update(flag.lower() for flag in row.flags)
            here.add(row.blob_id)
    found = await thread_ids(runtime, account_id, sorted(emails))
    thread_of = {blob_id: found.get(blob_id, blob_id) for blob_id in emails}
    members: dict[str, list[str]] = {}
    for blob_id, thread in thread_of.items():
        members.setdefault(thread, []).append(blob_id)
    trash = tree.role_holder("trash")
    return Census(emails, contents, members, thread_of, trash.id if trash else None)


async def count_mailboxes(runtime: Runtime, account_id: int, tree: Tree,
                          nodes: Iterable[Node]) -> dict[str, dict[str, int]]:
    """The four count properties of each node's mailbox, by object_id."""
    census = await take_census(runtime, account_id, tree)
    return {node.id: census.counts(node.id) for node in nodes}


# -- rendering ------------------------------------------------------------------------------


def render_rights(node: Node) -> dict[str, bool]:
    """§2.4 MailboxRights: the owner may do everything the store allows; INBOX cannot be
    deleted (RFC 9051 §6.3.4) and renaming it moves its messages instead (§6.3.5), which
    is not a JMAP rename."""
    return {"mayReadItems": True, "mayAddItems": True, "mayRemoveItems": True,
            "maySetSeen": True, "maySetKeywords": True, "mayCreateChild": True,
            "mayRename": not node.is_inbox, "mayDelete": not node.is_inbox, "maySubmit": True}


def render_mailbox(node: Node, counts: Mapping[str, int] | None) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": node.id, "name": node.name, "parentId": node.parent_id, "role": node.role,
        "sortOrder": node.sort_order, "myRights": render_rights(node),
        "isSubscribed": node.box.is_subscribed,
    }
    if counts is not None:
        record.update(counts)
    return record


def _store_of(call: Call[CallContext]) -> Store:
    return call.context.jmap.runtime.store


# -- Mailbox/get (§2.1) ---------------------------------------------------------------------


async def handle_mailbox_get(call: Call[CallContext]) -> list[Response]:
    args = parse_get_args(call.arguments, call.limits, known_properties=PROPERTIES)
    account = call.context.require_account(args.account_id)
    state, tree = await load_tree(_store_of(call), account.id)
    if args.ids is None:
        nodes = list(tree)
        if len(nodes) > call.limits.max_objects_in_get:  # RFC 8620 §5.1
            raise MethodError(MethodErrorType.REQUEST_TOO_LARGE,
                              f"more than {call.limits.max_objects_in_get} Mailboxes;"
                              " ask for them by id")
    else:
        nodes = [node for one in dict.fromkeys(args.ids) if (node := tree.get(one))]
    wants_counts = args.properties is None or bool(set(args.properties) & set(COUNT_PROPERTIES))
    counts = (await count_mailboxes(call.context.jmap.runtime, account.id, tree, nodes)
              if wants_counts else {})
    records = [render_mailbox(node, counts.get(node.id)) for node in nodes]
    return [("Mailbox/get", render_get_response(call.context.account_id, state, records,
                                                args.ids, args.properties))]


# -- Mailbox/changes (§2.2) -----------------------------------------------------------------


async def handle_mailbox_changes(call: Call[CallContext]) -> list[Response]:
    args = parse_changes_args(call.arguments, call.limits)
    account = call.context.require_account(args.account_id)
    try:
        changes = await _store_of(call).jmap_mailbox_changes(account.id, args.since_state,
                                                             args.max_changes)
    except CannotCalculateChanges as error:  # TooManyChanges too (decision 0057)
        raise MethodError(MethodErrorType.CANNOT_CALCULATE_CHANGES, str(error)) from None
    response = render_changes_response(
        call.context.account_id, changes.old_state, changes.new_state, has_more_changes=False,
        created=changes.created, updated=changes.updated, destroyed=changes.destroyed)
    # §2.2: the counts when only they changed; null when the server cannot tell
    response["updatedProperties"] = (list(COUNT_PROPERTIES) if changes.updated_counts_only
                                     else None)
    return [("Mailbox/changes", response)]


# -- Mailbox/query (§2.3) -------------------------------------------------------------------

Predicate = Callable[[Node], bool]
_CONDITIONS = ("parentId", "name", "role", "hasAnyRole", "isSubscribed")


def _unsupported_filter(description: str) -> MethodError:
    return MethodError(MethodErrorType.UNSUPPORTED_FILTER, description)


def _condition_test(key: str, value: Any) -> Predicate:
    """One property of a FilterCondition (§2.3) as a test; invalidArguments on a bad value."""
    if key == "parentId":
        if value is not None and not is_id(value):
            raise invalid_arguments("filter parentId must be an Id or null")
        return lambda node: node.parent_id == value
    if key == "name":
        if not isinstance(value, str):
            raise invalid_arguments("filter name must be a String")
        wanted = _casefold(value)  # §2.3: contains, case-insensitively
        return lambda node: wanted in _casefold(node.name)
    if key == "role":
        if value is not None and not isinstance(value, str):
            raise invalid_arguments("filter role must be a String or null")
        return lambda node: node.role == value
    flag = expect_bool(value, f"filter {key}")
    if key == "hasAnyRole":
        return lambda node: (node.role is not None) == flag
    return lambda node: node.box.is_subscribed == flag  # isSubscribed


def _compile_condition(condition: Mapping[str, Any]) -> Predicate:
    unknown = sorted(set(condition) - set(_CONDITIONS))
    if unknown:
        raise _unsupported_filter("unknown Mailbox filter properties: " + ", ".join(unknown))
    tests = [_condition_test(key, value) for key, value in condition.items()]
    return lambda node: all(test(node) for test in tests)


def compile_filter(found: Filter | None) -> Predicate:
    if found is None:
        return lambda node: True
    if not isinstance(found, FilterOperator):
        return _compile_condition(found)
    parts = [compile_filter(part) for part in found.conditions]
    if found.operator is Operator.AND:
        return lambda node: all(part(node) for part in parts)
    if found.operator is Operator.OR:
        return lambda node: any(part(node) for part in parts)
    return lambda node: not any(part(node) for part in parts)


def _casefold(text: str) -> str:
    return unicodedata.normalize("NFKD", text).casefold()


def _name_key(name: str, collation: str | None) -> Any:
    """The name compared under a collation (RFC 4790; i;unicode-casemap by default)."""
    if collation == "i;octet":
        return name
    if collation == "i;ascii-casemap":
        return name.translate(_ASCII_LOWER)
    if collation == "i;ascii-numeric":  # RFC 4790 §9.1: leading digits; none sorts last
        digits = name[:len(name) - len(name.lstrip("0123456789"))]
        return (0, int(digits)) if digits else (1, 0)
    return _casefold(name)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _comparator_key(comparator: Comparator) -> Callable[[Node], Any]:
    if comparator.extra:
        raise invalid_arguments("unknown Comparator members: " + ", ".join(comparator.extra))
    if comparator.property == "sortOrder":
        return lambda node: node.sort_order
    if comparator.property == "name":
        return lambda node: _name_key(node.name, comparator.collation)
    raise MethodError(MethodErrorType.UNSUPPORTED_SORT,
                      f"Mailboxes sort by sortOrder or name, not {comparator.property}")


def compile_sort(sort: Sequence[Comparator]) -> Callable[[Node, Node], int]:
    """Compare two Mailboxes by the comparators, then by name and id (a stable order)."""
    keys = [(_comparator_key(one), one.is_ascending) for one in sort]
    keys += [(lambda node: _casefold(node.name), True), (lambda node: node.id, True)]

    def compare(first: Node, second: Node) -> int:
        for key, is_ascending in keys:
            a, b = key(first), key(second)
            if a != b:
                return (-1 if a < b else 1) * (1 if is_ascending else -1)
        return 0
    return compare


def _tree_compare(tree: Tree, compare: Callable[[Node, Node], int]
                  ) -> Callable[[Node, Node], int]:
    """§2.3 sortAsTree: an ancestor first; otherwise the ancestors of each that are
    siblings, compared by the comparators."""
    def by_tree(first: Node, second: Node) -> int:
        first_path, second_path = tree.path(first.id), tree.path(second.id)
        for a, b in zip(first_path, second_path, strict=False):
            if a != b:
                return compare(tree.nodes[a], tree.nodes[b])
        return len(first_path) - len(second_path)
    return by_tree


def query_ids(tree: Tree, found: Filter | None, sort: Sequence[Comparator], *,
              sort_as_tree: bool, filter_as_tree: bool) -> list[str]:
    matches = compile_filter(found)
    compare = compile_sort(sort or (Comparator("sortOrder"), Comparator("name")))
    matched = {node.id: node for node in tree if matches(node)}
    if filter_as_tree:  # §2.3: only when every ancestor matches too
        matched = {object_id: node for object_id, node in matched.items()
                   if all(one in matched for one in tree.path(object_id))}
    if sort_as_tree:
        compare = _tree_compare(tree, compare)
    ordered = sorted(matched.values(), key=functools.cmp_to_key(compare))
    return [node.id for node in ordered]


def _tree_options(extra: Mapping[str, Any]) -> tuple[bool, bool]:
    return (optional(extra, "sortAsTree", expect_bool, False),
            optional(extra, "filterAsTree", expect_bool, False))


async def handle_mailbox_query(call: Call[CallContext]) -> list[Response]:
    args = parse_query_args(call.arguments, call.limits, extra=("sortAsTree", "filterAsTree"))
    account = call.context.require_account(args.account_id)
    sort_as_tree, filter_as_tree = _tree_options(args.extra)
    compile_filter(args.filter)  # refused before any reading, even with no Mailboxes
    compile_sort(args.sort)
    state, tree = await load_tree(_store_of(call), account.id)
    ids = query_ids(tree, args.filter, args.sort, sort_as_tree=sort_as_tree,
                    filter_as_tree=filter_as_tree)
    window = compute_query_window(ids, position=args.position, anchor=args.anchor,
                                  anchor_offset=args.anchor_offset, limit=args.limit,
                                  max_limit=call.limits.max_query_limit)
    return [("Mailbox/query", render_query_response(
        call.context.account_id, state, window, can_calculate_changes=False,
        total=len(ids) if args.calculate_total else None))]


async def handle_mailbox_query_changes(call: Call[CallContext]) -> list[Response]:
    """RFC 8620 §5.6 lets a server always answer cannotCalculateChanges; a client then
    runs Mailbox/query again (a few hundred ids at most, and Mailbox/query says
    canCalculateChanges: false)."""
    args = parse_query_changes_args(call.arguments, call.limits,
                                    extra=("sortAsTree", "filterAsTree"))
    call.context.require_account(args.account_id)
    _tree_options(args.extra)
    compile_filter(args.filter)
    compile_sort(args.sort)
    raise MethodError(MethodErrorType.CANNOT_CALCULATE_CHANGES,
                      "Mailbox query results are not tracked; run Mailbox/query again")
