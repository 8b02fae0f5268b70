"""Mailbox/set (RFC 8621 §2.5; RFC 8620 §5.3): create, rename, move, (un)subscribe and
destroy Mailboxes through the same store operations IMAP uses; and `register`, which
wires the five Mailbox methods (the other four are in mailboxes.py, below this module).

Invariants:
- Creates run first (a create whose parentId names a later create's "#id" waits for it),
  then updates, then destroys, deepest first so that a parent and its children can go in
  one call (RFC 8620 §5.3 lets the server choose the order within each).
- A name obeys what IMAP enforces (imap/commands/mailboxes.py): MAX_MAILBOX_NAME_LENGTH
  bytes and MAX_MAILBOX_DEPTH levels of the full name, each moved descendant's too; no
  "/" (the hierarchy delimiter: the parent is parentId's business), no control
  characters (RFC 8621 §2: Net-Unicode, which also wants NFC: the name is normalised and
  the normalised name returned). An account holds MAX_MAILBOXES_PER_ACCOUNT mailboxes
  and as many subscriptions: past that, overQuota.
- Roles come from the store's special-use attributes, which only a create can set:
  a new Mailbox may take a role the store knows and no Mailbox has; a role never changes.
  sortOrder is not stored: any UnsignedInt is accepted and the one the server uses is
  returned in `created` / `updated` when it differs (RFC 8620 §5.3).
- INBOX is neither destroyed (RFC 9051 §6.3.4) nor renamed or moved (the store's rename
  of INBOX moves its messages to a new mailbox, which is not a JMAP rename): forbidden.
- onDestroyRemoveEmails expunges the mailbox's messages before deleting it, so Email
  /changes learns which Emails went (decision 0057); without it a non-empty mailbox is
  mailboxHasEmail, and one with children mailboxHasChild.
- A storage failure after some records were written is serverPartialFail, before any
  serverFail (RFC 8620 §3.6.2).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from postroom.accounts.mailboxlimits import MailboxLimits, name_problem
from postroom.errors import Refused, TryLater
from postroom.jmap.context import MAIL, CallContext
from postroom.jmap.core import Call, MethodRegistry, Response
from postroom.jmap.errors import (
    MethodError,
    MethodErrorType,
    SetError,
    SetErrorType,
    SetFailure,
    render_set_errors,
)
from postroom.jmap.mailboxes import (
    COUNT_PROPERTIES,
    KNOWN_ROLES,
    PROPERTIES,
    SEPARATOR,
    SERVER_SET,
    USE_OF_ROLE,
    Node,
    Tree,
    count_mailboxes,
    handle_mailbox_changes,
    handle_mailbox_get,
    handle_mailbox_query,
    handle_mailbox_query_changes,
    join_name,
    load_tree,
    render_mailbox,
    store_name,
)
from postroom.jmap.standard import (
    SetArgs,
    UnknownCreationId,
    apply_patch,
    parse_set_args,
    resolve_creation_id,
)
from postroom.jmap.types import expect_bool, is_unsigned_int, optional
from postroom.store.api import Account, SpecialUse, Store
from postroom.store.errors import AlreadyExists, NotFound

MAX_SORT_ORDER = 2**31 - 1  # RFC 8621 §2: 0 <= sortOrder < 2^31
# RFC 8621 §2 defaults, which a null in a patch restores (RFC 8620 §5.3 PatchObject).
_PATCH_DEFAULTS: dict[str, Any] = {"parentId": None, "role": None, "sortOrder": 0}
# isSubscribed has no default in §2: a create without it subscribes, as docker-mailserver's
# default folders are, so IMAP clients that list only subscribed folders show the Mailbox.
_CREATE_DEFAULTS: dict[str, Any] = {**_PATCH_DEFAULTS, "isSubscribed": True}


def _mailbox_error(kind: str, description: str) -> SetFailure:
    return SetFailure(SetError(kind, description))


def _forbidden(description: str) -> SetFailure:
    return _mailbox_error(SetErrorType.FORBIDDEN, description)


def _not_found(description: str = "no such Mailbox") -> SetFailure:
    return _mailbox_error(SetErrorType.NOT_FOUND, description)


def _set_error(failure: SetFailure | Refused) -> SetError:
    """A record's SetError; a store refusal no check foresaw (a race with another
    session, mostly) is notFound for a vanished mailbox, forbidden otherwise."""
    if isinstance(failure, SetFailure):
        return failure.error
    if isinstance(failure, NotFound):
        return _not_found("the Mailbox was deleted meanwhile").error
    if isinstance(failure, AlreadyExists):
        return SetError.invalid_properties(["name"], "a sibling Mailbox has that name")
    return SetError(SetErrorType.FORBIDDEN, str(failure))


class _Invalid:
    """invalidProperties collected over one record (RFC 8620 §5.3: SHOULD list all)."""

    def __init__(self) -> None:
        self.problems: dict[str, str] = {}

    def add(self, name: str, description: str) -> None:
        self.problems.setdefault(name, description)

    def raise_any(self) -> None:
        if self.problems:
            raise SetFailure(SetError.invalid_properties(
                self.problems, "; ".join(self.problems.values())))


def parse_name(value: Any, invalid: _Invalid) -> str | None:
    """A Mailbox name as a client gives it (module invariants), NFC; None if invalid."""
    if not isinstance(value, str):
        invalid.add("name", "name must be a String")
        return None
    if any(0xD800 <= ord(char) <= 0xDFFF for char in value):
        invalid.add("name", "name is not Unicode text")
        return None
    name = unicodedata.normalize("NFC", value)
    if not name:
        invalid.add("name", "name must not be empty")
    elif SEPARATOR in name:
        invalid.add("name", f"name must not contain {SEPARATOR!r}: use parentId for levels")
    elif any(ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F for char in name):
        invalid.add("name", "name must not contain control characters")
    else:
        return name
    return None


def _parse_sort_order(value: Any, invalid: _Invalid) -> None:
    if not (is_unsigned_int(value) and value <= MAX_SORT_ORDER):
        invalid.add("sortOrder", "sortOrder must be an UnsignedInt below 2^31")


def _parse_subscribed(value: Any, invalid: _Invalid) -> bool:
    if not isinstance(value, bool):
        invalid.add("isSubscribed", "isSubscribed must be a Boolean")
        return False
    return value


@dataclass(slots=True)
class _SetRun:
    """One Mailbox/set call's working state; `tree` is re-read after every write."""

    call: Call[CallContext]
    store: Store
    account: Account
    limits: MailboxLimits
    tree: Tree
    on_destroy_remove_emails: bool
    has_written: bool = False
    created: dict[str, dict[str, Any]] = field(default_factory=dict)
    not_created: dict[str, SetError] = field(default_factory=dict)
    updated: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    not_updated: dict[str, SetError] = field(default_factory=dict)
    destroyed: list[str] = field(default_factory=list)
    not_destroyed: dict[str, SetError] = field(default_factory=dict)

    async def reload(self) -> None:
        self.has_written = True
        self.tree = Tree(await self.store.list_mailboxes(self.account.id))

    # -- shared checks --------------------------------------------------------------------

    def parent_of(self, value: Any, invalid: _Invalid) -> Node | None:
        """parentId's Mailbox: an Id, or "#creation-id" of a Mailbox made in this request."""
        if value is None:
            return None
        try:
            found = self.tree.get(resolve_creation_id(value, self.call.created_ids)
                                  if isinstance(value, str) else "")
        except UnknownCreationId:
            found = None
        if found is None:
            invalid.add("parentId", "parentId names no Mailbox")
        return found

    def check_full_name(self, full_name: str, invalid: _Invalid) -> None:
        problem = name_problem(full_name, self.limits)
        if problem is not None:
            is_depth = full_name.count(SEPARATOR) + 1 > self.limits.depth
            invalid.add("parentId" if is_depth else "name", problem)

    def check_free(self, full_name: str, invalid: _Invalid) -> None:
        if store_name(full_name) in self.tree.by_name:
            invalid.add("name", "a sibling Mailbox has that name")

    async def check_subscription_room(self) -> None:
        if len(await self.store.list_subscriptions(self.account.id)) >= self.limits.mailboxes:
            raise _mailbox_error(SetErrorType.OVER_QUOTA, f"at most {self.limits.mailboxes}"
                                 " subscriptions per account (MAX_MAILBOXES_PER_ACCOUNT)")

    async def set_subscribed(self, name: str, is_subscribed: bool) -> None:
        if is_subscribed:
            await self.check_subscription_room()
        await self.store.set_subscribed(self.account.id, name, is_subscribed)


# -- create ---------------------------------------------------------------------------------


def _check_properties(record: Mapping[str, Any], invalid: _Invalid) -> None:
    for name in record:
        if name not in PROPERTIES:
            invalid.add(name, f"Mailbox has no property {name}")
        elif name in SERVER_SET:
            invalid.add(name, f"{name} is set by the server")


def _new_role(tree: Tree, value: Any, invalid: _Invalid) -> SpecialUse | None:
    if value is None:
        return None
    if not isinstance(value, str) or value not in KNOWN_ROLES:
        invalid.add("role", "role must be null or a registered attribute, lower-cased")
    elif tree.role_holder(value) is not None:
        invalid.add("role", f"a Mailbox already has role {value}")  # §2: one per account
    elif value not in USE_OF_ROLE:
        invalid.add("role", f"role {value} cannot be given to a new Mailbox here")
    else:
        return USE_OF_ROLE[value]
    return None


async def _create_one(run: _SetRun, creation_id: str, record: Mapping[str, Any]
                      ) -> dict[str, Any]:
    invalid = _Invalid()
    _check_properties(record, invalid)
    name = parse_name(record.get("name"), invalid)
    parent = run.parent_of(record.get("parentId"), invalid)
    use = _new_role(run.tree, record.get("role"), invalid)
    if "sortOrder" in record:
        _parse_sort_order(record["sortOrder"], invalid)
    is_subscribed = _parse_subscribed(record.get("isSubscribed", True), invalid)
    full_name = join_name(parent.box if parent else None, name or "")
    if name is not None and "parentId" not in invalid.problems:
        run.check_full_name(full_name, invalid)
        run.check_free(full_name, invalid)
    invalid.raise_any()
    if len(run.tree.nodes) >= run.limits.mailboxes:
        raise _mailbox_error(SetErrorType.OVER_QUOTA, f"at most {run.limits.mailboxes}"
                             " mailboxes per account (MAX_MAILBOXES_PER_ACCOUNT)")
    if is_subscribed:
        await run.check_subscription_room()
    box = await run.store.create_mailbox(run.account.id, full_name, use)  # AlreadyExists:
    run.has_written = True  # made meanwhile by another session (see _set_error)
    if box.is_subscribed != is_subscribed:  # a subscription may outlive its mailbox
        await run.store.set_subscribed(run.account.id, box.name, is_subscribed)
    await run.reload()
    run.call.created_ids[creation_id] = box.object_id
    node = run.tree.get(box.object_id)
    if node is None:
        raise _not_found("the Mailbox was deleted as it was made")
    return _created_record(node, record)


def _created_record(node: Node, sent: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 8620 §5.3 `created`: server-set properties, defaults the client left out and
    values the server chose differently (a normalised name, our sortOrder)."""
    full = render_mailbox(node, dict.fromkeys(COUNT_PROPERTIES, 0))
    answer = {name: full[name] for name in SERVER_SET}
    for name in (*_CREATE_DEFAULTS, "name"):
        if name not in sent or sent[name] != full[name]:
            answer[name] = full[name]
    return answer


def _pending_reference(record: Mapping[str, Any], pending: Mapping[str, Any]) -> bool:
    parent = record.get("parentId")
    return isinstance(parent, str) and parent.startswith("#") and parent[1:] in pending


async def _run_creates(run: _SetRun, creates: Mapping[str, dict[str, Any]]) -> None:
    """Each create once, parents before their "#id" children; a cycle of references
    leaves its members to fail on parentId."""
    pending = dict(creates)
    while pending:
        ready = [creation_id for creation_id, record in pending.items()
                 if not _pending_reference(record, pending)] or list(pending)[:1]
        for creation_id in ready:
            record = pending.pop(creation_id)
            try:
                run.created[creation_id] = await _create_one(run, creation_id, record)
            except (SetFailure, Refused) as failure:
                run.not_created[creation_id] = _set_error(failure)


# -- update ---------------------------------------------------------------------------------


async def _current_record(run: _SetRun, node: Node, patch: Mapping[str, Any]
                          ) -> dict[str, Any]:
    touched = {key.split("/", 1)[0] for key in patch}
    counts = None
    if touched & set(COUNT_PROPERTIES):  # only then are the counts worth reading
        counts = (await count_mailboxes(run.call.context.jmap.runtime, run.account.id,
                                        run.tree, [node]))[node.id]
    return render_mailbox(node, counts)


def _check_patched(current: Mapping[str, Any], patched: Mapping[str, Any],
                   invalid: _Invalid) -> None:
    for name in patched:
        if name not in PROPERTIES:
            invalid.add(name, f"Mailbox has no property {name}")
    for name in SERVER_SET:
        if name in current and patched.get(name) != current[name]:
            invalid.add(name, f"{name} is set by the server")
    if patched.get("role") != current["role"]:
        invalid.add("role", "a Mailbox's role cannot be changed")
    _parse_sort_order(patched.get("sortOrder"), invalid)


def _check_move(run: _SetRun, node: Node, parent: Node | None, invalid: _Invalid) -> None:
    below = {one.id for one in run.tree.descendants(node.id)}
    if parent is not None and (parent.id == node.id or parent.id in below):
        invalid.add("parentId", "a Mailbox cannot move below itself")


async def _rename(run: _SetRun, node: Node, name: str, parent: Node | None,
                  invalid: _Invalid) -> None:
    """Rename and/or move `node` with its descendants (one store rename, as IMAP's)."""
    if node.is_inbox:
        raise _forbidden("INBOX cannot be renamed or moved")
    _check_move(run, node, parent, invalid)
    full_name = join_name(parent.box if parent else None, name)
    if not invalid.problems:
        run.check_full_name(full_name, invalid)
        for below in run.tree.descendants(node.id):
            run.check_full_name(full_name + below.box.name[len(node.box.name):], invalid)
        run.check_free(full_name, invalid)
    invalid.raise_any()
    await run.store.rename_mailbox(node.box.id, full_name)
    await run.reload()


async def _update_one(run: _SetRun, object_id: str, patch: Mapping[str, Any]
                      ) -> dict[str, Any] | None:
    node = run.tree.get(object_id)
    if node is None:
        raise _not_found()
    current = await _current_record(run, node, patch)
    patched = apply_patch(current, patch, _PATCH_DEFAULTS)  # SetFailure(invalidPatch) itself
    invalid = _Invalid()
    _check_patched(current, patched, invalid)
    # An unchanged name is not judged again: IMAP may have stored one we would refuse.
    name = node.name if patched.get("name") == node.name else parse_name(
        patched.get("name"), invalid)
    is_subscribed = _parse_subscribed(patched.get("isSubscribed"), invalid)
    parent = run.parent_of(patched.get("parentId"), invalid)
    invalid.raise_any()
    assert name is not None  # parse_name gave a problem otherwise
    new_parent_id = parent.id if parent else None
    if name != node.name or new_parent_id != node.parent_id:
        await _rename(run, node, name, parent, invalid)
    moved = run.tree.get(object_id)
    if moved is None:
        raise _not_found("the Mailbox was deleted meanwhile")
    if is_subscribed != moved.box.is_subscribed:
        await run.set_subscribed(moved.box.name, is_subscribed)
        run.has_written = True
    changed = {key: value for key, value in (("name", moved.name),
                                             ("sortOrder", moved.sort_order))
               if key in patch and patch[key] != value}
    return changed or None


async def _run_updates(run: _SetRun, updates: Mapping[str, dict[str, Any]],
                       destroying: set[str]) -> None:
    for target, patch in updates.items():
        try:
            object_id = resolve_creation_id(target, run.call.created_ids)
        except UnknownCreationId:
            run.not_updated[target] = _not_found().error
            continue
        try:
            if object_id in destroying:  # RFC 8620 §5.3 willDestroy
                raise _mailbox_error(SetErrorType.WILL_DESTROY, "destroyed in this call")
            run.updated[object_id] = await _update_one(run, object_id, patch)
        except (SetFailure, Refused) as failure:
            run.not_updated[object_id] = _set_error(failure)


# -- destroy --------------------------------------------------------------------------------


async def _destroy_one(run: _SetRun, node: Node) -> None:
    if node.is_inbox:
        raise _forbidden("INBOX cannot be destroyed")
    if run.tree.children.get(node.id):
        raise _mailbox_error("mailboxHasChild", "destroy the Mailboxes inside it first")
    held = (await run.store.mailbox_usage(node.box.id)).mailbox_messages
    if held and not run.on_destroy_remove_emails:
        raise _mailbox_error("mailboxHasEmail", "the Mailbox holds Emails and"
                             " onDestroyRemoveEmails is false")
    if held:
        uids = (await run.store.list_flag_columns(node.box.id)).uids
        await run.store.expunge(node.box.id, uids)
        run.has_written = True
    await run.store.delete_mailbox(node.box.id)
    await run.reload()


async def _run_destroys(run: _SetRun, targets: list[str]) -> None:
    resolved: dict[str, str] = {}
    for target in dict.fromkeys(targets):
        try:
            resolved[target] = resolve_creation_id(target, run.call.created_ids)
        except UnknownCreationId:
            run.not_destroyed[target] = _not_found().error

    def depth(object_id: str) -> int:
        return -len(run.tree.path(object_id)) if object_id in run.tree.nodes else 0
    for object_id in sorted(dict.fromkeys(resolved.values()), key=depth):
        node = run.tree.get(object_id)
        try:
            if node is None:
                raise _not_found()
            await _destroy_one(run, node)
            run.destroyed.append(object_id)
        except (SetFailure, Refused) as failure:
            run.not_destroyed[object_id] = _set_error(failure)


# -- the method -----------------------------------------------------------------------------


async def _run_all(run: _SetRun, args: SetArgs) -> None:
    try:
        await _run_creates(run, args.create)
        destroying = set()
        for target in args.destroy:
            try:
                destroying.add(resolve_creation_id(target, run.call.created_ids))
            except UnknownCreationId:
                continue
        await _run_updates(run, args.update, destroying)
        await _run_destroys(run, args.destroy)
    except TryLater as failure:
        if run.has_written:  # RFC 8620 §3.6.2: the client must resynchronise
            raise MethodError(MethodErrorType.SERVER_PARTIAL_FAIL) from failure
        raise


def _render(run: _SetRun, old_state: str, new_state: str) -> dict[str, Any]:
    return {
        "accountId": run.call.context.account_id, "oldState": old_state,
        "newState": new_state, "created": run.created or None,
        "updated": run.updated or None, "destroyed": run.destroyed or None,
        "notCreated": render_set_errors(run.not_created),
        "notUpdated": render_set_errors(run.not_updated),
        "notDestroyed": render_set_errors(run.not_destroyed),
    }


async def handle_mailbox_set(call: Call[CallContext]) -> list[Response]:
    args = parse_set_args(call.arguments, call.limits, extra=("onDestroyRemoveEmails",))
    remove_emails = optional(args.extra, "onDestroyRemoveEmails", expect_bool, False)
    account = call.context.require_account(args.account_id)
    store = call.context.jmap.runtime.store
    old_state, tree = await load_tree(store, account.id)
    if args.if_in_state is not None and args.if_in_state != old_state:
        raise MethodError(MethodErrorType.STATE_MISMATCH,
                          f"the state is {old_state}, not {args.if_in_state}")
    run = _SetRun(call, store, account, MailboxLimits.from_config(call.context.jmap.config),
                  tree, remove_emails)
    await _run_all(run, args)
    new_state = await store.jmap_state(account.id) if run.has_written else old_state
    return [("Mailbox/set", _render(run, old_state, new_state))]


def register(registry: MethodRegistry[CallContext]) -> None:
    """Mailbox/get, /changes, /query, /queryChanges and /set (RFC 8621 §2)."""
    registry.register("Mailbox/get", MAIL, handle_mailbox_get)
    registry.register("Mailbox/changes", MAIL, handle_mailbox_changes)
    registry.register("Mailbox/query", MAIL, handle_mailbox_query)
    registry.register("Mailbox/queryChanges", MAIL, handle_mailbox_query_changes)
    registry.register("Mailbox/set", MAIL, handle_mailbox_set)
