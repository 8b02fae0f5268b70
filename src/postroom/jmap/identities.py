"""Identity/get, Identity/changes and Identity/set (RFC 8621 §6), and `register`.

Owns which addresses a user may send as over JMAP, the same rule SMTP submission applies
under SPOOF_PROTECTION (checks/spoofing.py `owns`): the account's own address, every
alias that reaches the account, and "*@domain" (§6: a wildcard identity) for a catch-all
that does. Each such address is a default identity (mayDelete false), kept in step with
the aliases on every Identity call (`current_identities`); a user may add identities
for addresses it may send as (forbiddenFrom otherwise; any address with SPOOF_PROTECTION
off), and rename or sign any identity. Names, signatures, replyTo and bcc are stored in
the store's JmapIdentityStore role (migration 0030).

Decisions: the aliases that may reach the account are found by walking the alias table
backwards from the account's address (a superset: catch-alls and shadowing are ignored),
then each is confirmed by the ownership check itself, so the list never promises an
address submission would refuse. Identity ids are "I" + the row id; the state is the
account's identity counter.
Invariants: `email` and `mayDelete` never change (§6: immutable / server-set); a default
identity is never destroyed (forbidden), only left behind when its alias goes.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Sequence
from typing import Any

from postroom.checks.spoofing import SpoofingCheck
from postroom.delivery.recipients import MAX_ALIAS_DEPTH
from postroom.errors import BadSyntax
from postroom.jmap.context import SUBMISSION, CallContext
from postroom.jmap.core import Call, MethodRegistry, Response
from postroom.jmap.errors import (
    MethodError,
    MethodErrorType,
    SetError,
    SetErrorType,
    SetFailure,
    render_set_errors,
)
from postroom.jmap.standard import (
    apply_patch,
    parse_changes_args,
    parse_get_args,
    parse_set_args,
    render_changes_response,
    render_get_response,
    set_target,
)
from postroom.jmap.types import parse_numbered_id, render_numbered_id
from postroom.mail.address import normalize_domain, parse_address
from postroom.store.api import Account, Alias
from postroom.store.errors import CannotCalculateChanges
from postroom.store.jmapidentities_api import IdentityFields, JmapIdentity, JmapKind

FORBIDDEN_FROM = "forbiddenFrom"  # RFC 8621 §6.3
MAX_IDENTITIES = 100  # identities a user adds, per account (the default ones not counted)
MAX_NAME = 256  # characters of an identity's name, or of a name in replyTo/bcc
MAX_SIGNATURE = 64 * 1024  # characters of each signature
MAX_ADDRESSES = 50  # EmailAddress entries of replyTo, and of bcc
MAX_EMAIL = 320  # characters of one address (RFC 5321 §4.5.3.1: 64 + @ + 255)
PROPERTIES = ("id", "name", "email", "replyTo", "bcc", "textSignature", "htmlSignature",
              "mayDelete")
_SETTABLE = frozenset({"name", "email", "replyTo", "bcc", "textSignature", "htmlSignature"})


# -- who may send as what ---------------------------------------------------------------------


def _domain_of(address: str) -> str:
    return address.rpartition("@")[2]


def _candidate_sources(aliases: Sequence[Alias], address: str) -> dict[str, list[str]]:
    """Alias sources (with their targets) from which `address` may be reachable: the alias
    graph walked backwards, a catch-all reaching every address of its domain."""
    targets_of: dict[str, list[str]] = {}
    for alias in aliases:
        targets_of.setdefault(alias.source, []).append(alias.target)
    reached, domains = {address}, set()
    for _ in range(MAX_ALIAS_DEPTH + 1):  # deeper chains do not resolve (recipients.py)
        grown = {source for source, targets in targets_of.items() if source not in reached
                 and any(t in reached or _domain_of(t) in domains for t in targets)}
        if not grown:
            break
        reached |= grown
        domains |= {source[1:] for source in grown if source.startswith("@")}
    return {source: targets_of[source] for source in sorted(reached - {address})}


async def sendable_addresses(call: Call[CallContext], account: Account) -> list[str]:
    """The account's own address, each alias (and "*@domain" for each catch-all) that
    SPOOF_PROTECTION's rule says it owns."""
    store = call.context.jmap.runtime.store
    check = SpoofingCheck(call.context.jmap.config, store)
    found = [account.address]
    for source, targets in _candidate_sources(await store.list_aliases(),
                                              account.address).items():  # fmt: skip
        if not source.startswith("@"):
            if await check.owns(account.address, source):
                found.append(source)
            continue
        for target in targets:  # a catch-all reaches the account through a target
            if await check.owns(account.address, target):
                found.append("*" + source)
                break
    return found


def covers(identity_email: str, address: str) -> bool:
    """Is `address` (canonical) the identity's address, or in its wildcard's domain?"""
    if identity_email.startswith("*@"):
        return _domain_of(address) == identity_email[2:]
    return address == identity_email


def canonical_address(text: str) -> str | None:
    """An address as the store keeps it (lower-cased, A-label domain); None if it is none."""
    try:
        return str(parse_address(text))
    except BadSyntax:
        return None


async def may_send_as(call: Call[CallContext], account: Account, address: str) -> bool:
    """SMTP submission's rule for a canonical address (always true with SPOOF_PROTECTION
    off); a "*@domain" identity only when a catch-all of the domain reaches the account."""
    if not call.context.jmap.config.spoof_protection:
        return True
    if address.startswith("*@"):
        return address in await sendable_addresses(call, account)
    check = SpoofingCheck(call.context.jmap.config, call.context.jmap.runtime.store)
    return await check.owns(account.address, address)


async def current_identities(call: Call[CallContext],
                             account: Account) -> tuple[str, list[JmapIdentity]]:  # fmt: skip
    """The identity state and the live identities, the default ones brought up to date
    with the aliases first."""
    store = call.context.jmap.runtime.store
    await store.jmap_sync_identities(account.id, await sendable_addresses(call, account))
    state, identities = await store.jmap_identities(account.id)
    return str(state), identities


# -- rendering and parsing --------------------------------------------------------------------


def render_identity_id(identity_id: int) -> str:
    return render_numbered_id("I", identity_id)


def parse_identity_id(text: str) -> int | None:
    return parse_numbered_id("I", text)


def render_identity(identity: JmapIdentity) -> dict[str, Any]:
    fields = identity.fields
    return {
        "id": render_identity_id(identity.id), "name": fields.name, "email": identity.email,
        "replyTo": None if fields.reply_to is None else json.loads(fields.reply_to),
        "bcc": None if fields.bcc is None else json.loads(fields.bcc),
        "textSignature": fields.text_signature, "htmlSignature": fields.html_signature,
        "mayDelete": not identity.is_default,
    }


def _invalid(name: str, description: str) -> SetFailure:
    return SetFailure(SetError.invalid_properties([name], description))


def _text(record: dict[str, Any], name: str, limit: int) -> str:
    value = record.get(name)
    if value is None:
        return ""  # §6: these default to ""
    if not isinstance(value, str):
        raise _invalid(name, f"{name} must be a String")
    if len(value) > limit:
        raise _invalid(name, f"{name} is longer than {limit} characters")
    return value


def _email_addresses(record: dict[str, Any], name: str) -> str | None:
    """§4.1.2.3 EmailAddress[]|null as canonical JSON; invalidProperties otherwise."""
    value = record.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > MAX_ADDRESSES:
        raise _invalid(name, f"{name} must be null or at most {MAX_ADDRESSES} EmailAddress")
    kept = []
    for item in value:
        if not isinstance(item, dict) or set(item) - {"name", "email"}:
            raise _invalid(name, f"{name}: an EmailAddress is {{name, email}}")
        person, email = item.get("name"), item.get("email")
        if person is not None and (not isinstance(person, str) or len(person) > MAX_NAME):
            raise _invalid(name, f"{name}: name must be null or a short String")
        if not isinstance(email, str) or not 0 < len(email) <= MAX_EMAIL or "@" not in email:
            raise _invalid(name, f"{name}: email must be an address")
        kept.append({"name": person, "email": email})
    return json.dumps(kept, ensure_ascii=False, separators=(",", ":"))


def parse_fields(record: dict[str, Any]) -> IdentityFields:
    """The user-settable fields of a full Identity record; SetFailure when one is wrong."""
    return IdentityFields(
        _text(record, "name", MAX_NAME), _email_addresses(record, "replyTo"),
        _email_addresses(record, "bcc"), _text(record, "textSignature", MAX_SIGNATURE),
        _text(record, "htmlSignature", MAX_SIGNATURE))


def parse_identity_email(value: object) -> str:
    """The address of a new identity, canonical; "*@domain" is a wildcard (§6)."""
    if not isinstance(value, str) or len(value) > MAX_EMAIL:
        raise _invalid("email", "email must be an address")
    if value.startswith("*@"):
        try:
            return "*@" + normalize_domain(value[2:])
        except BadSyntax:
            raise _invalid("email", "email: not a domain after *@") from None
    canonical = canonical_address(value)
    if canonical is None:
        raise _invalid("email", "email must be an address of the form user@domain")
    return canonical


# -- the methods ------------------------------------------------------------------------------


async def handle_identity_get(call: Call[CallContext]) -> list[Response]:
    args = parse_get_args(call.arguments, call.limits, known_properties=PROPERTIES)
    account = call.context.require_account(args.account_id)
    state, identities = await current_identities(call, account)
    records = [render_identity(identity) for identity in identities]
    return [("Identity/get", render_get_response(call.context.account_id, state, records,
                                                 args.ids, args.properties))]


async def handle_identity_changes(call: Call[CallContext]) -> list[Response]:
    args = parse_changes_args(call.arguments, call.limits)
    account = call.context.require_account(args.account_id)
    await current_identities(call, account)  # aliases changed since: that is a change too
    try:
        changes = await call.context.jmap.runtime.store.jmap_object_changes(
            account.id, JmapKind.IDENTITY, args.since_state, args.max_changes)
    except CannotCalculateChanges as error:
        raise MethodError(MethodErrorType.CANNOT_CALCULATE_CHANGES, str(error)) from None
    ids = [[render_identity_id(one) for one in group]
           for group in (changes.created, changes.updated, changes.destroyed)]
    return [("Identity/changes", render_changes_response(
        call.context.account_id, str(changes.old_state), str(changes.new_state),
        has_more_changes=False, created=ids[0], updated=ids[1], destroyed=ids[2]))]


class _IdentitySet:
    """One Identity/set call: creates, then updates, then destroys (RFC 8620 §5.3)."""

    def __init__(self, call: Call[CallContext], account: Account,
                 identities: list[JmapIdentity]) -> None:  # fmt: skip
        self.call = call
        self.account = account
        self.by_id = {identity.id: identity for identity in identities}
        self.created: dict[str, Any] = {}
        self.updated: dict[str, Any] = {}
        self.destroyed: list[str] = []
        self.errors: dict[str, dict[str, SetError]] = {
            "notCreated": {}, "notUpdated": {}, "notDestroyed": {}}

    async def create(self, creation_id: str, record: dict[str, Any]) -> None:
        unknown = sorted(set(record) - _SETTABLE)
        if unknown:  # id and mayDelete are the server's (§6)
            raise SetFailure(SetError.invalid_properties(unknown, "not settable on create"))
        email = parse_identity_email(record.get("email"))
        fields = parse_fields(record)
        if not await may_send_as(self.call, self.account, email):
            raise SetFailure(SetError(FORBIDDEN_FROM, f"you may not send as {email}"))
        made = await self.call.context.jmap.runtime.store.jmap_create_identity(
            self.account.id, email, fields, MAX_IDENTITIES)
        if made is None:
            raise SetFailure(SetError(SetErrorType.OVER_QUOTA,
                                      f"at most {MAX_IDENTITIES} identities may be added"))
        self.by_id[made.id] = made
        identity_id = render_identity_id(made.id)
        self.call.created_ids[creation_id] = identity_id
        self.created[creation_id] = {"id": identity_id, "mayDelete": True}

    def _target(self, key: str) -> JmapIdentity:
        return set_target(key, self.call.created_ids, parse_identity_id, self.by_id)

    async def update(self, key: str, patch: dict[str, Any]) -> None:
        identity = self._target(key)
        before = render_identity(identity)
        after = apply_patch(before, patch)
        changed = sorted(name for name in set(before) | set(after)
                         if name not in _SETTABLE - {"email"}
                         and before.get(name) != after.get(name))
        if changed:  # §6: id, email and mayDelete cannot change
            raise SetFailure(SetError.invalid_properties(changed, "immutable"))
        fields = parse_fields(after)
        made = await self.call.context.jmap.runtime.store.jmap_update_identity(
            self.account.id, identity.id, fields)
        if made is None:
            raise SetFailure(SetError(SetErrorType.NOT_FOUND))
        self.by_id[made.id] = made
        self.updated[render_identity_id(made.id)] = None

    async def destroy(self, key: str) -> None:
        identity = self._target(key)
        if identity.is_default:
            raise SetFailure(SetError(SetErrorType.FORBIDDEN,
                                      "an address you may send as cannot be removed"))
        store = self.call.context.jmap.runtime.store
        if not await store.jmap_destroy_identity(self.account.id, identity.id):
            raise SetFailure(SetError(SetErrorType.NOT_FOUND))
        del self.by_id[identity.id]
        self.destroyed.append(render_identity_id(identity.id))


async def handle_identity_set(call: Call[CallContext]) -> list[Response]:
    args = parse_set_args(call.arguments, call.limits)
    account = call.context.require_account(args.account_id)
    old_state, identities = await current_identities(call, account)
    if args.if_in_state is not None and args.if_in_state != old_state:
        raise MethodError(MethodErrorType.STATE_MISMATCH, "the state is " + old_state)
    work = _IdentitySet(call, account, identities)
    for creation_id, record in args.create.items():
        await _attempt(work.create(creation_id, record), work.errors["notCreated"],
                       creation_id)
    for key, patch in args.update.items():
        await _attempt(work.update(key, patch), work.errors["notUpdated"], key)
    for key in args.destroy:
        await _attempt(work.destroy(key), work.errors["notDestroyed"], key)
    new_state, _ = await call.context.jmap.runtime.store.jmap_identities(account.id)
    return [("Identity/set", render_set_response(
        call.context.account_id, old_state, str(new_state), work.created, work.updated,
        work.destroyed, work.errors))]


async def _attempt(step: Awaitable[None], errors: dict[str, SetError], key: str) -> None:
    try:
        await step
    except SetFailure as failure:
        errors[key] = failure.error


def render_set_response(account_id: str, old_state: str, new_state: str,
                        created: dict[str, Any], updated: dict[str, Any],
                        destroyed: list[str],
                        errors: dict[str, dict[str, SetError]]) -> dict[str, Any]:  # fmt: skip
    """Foo/set's response (RFC 8620 §5.3): empty maps and lists are null."""
    return {"accountId": account_id, "oldState": old_state, "newState": new_state,
            "created": created or None, "updated": updated or None,
            "destroyed": destroyed or None,
            **{name: render_set_errors(found) for name, found in errors.items()}}


def register(registry: MethodRegistry[CallContext]) -> None:
    registry.register("Identity/get", SUBMISSION, handle_identity_get)
    registry.register("Identity/changes", SUBMISSION, handle_identity_changes)
    registry.register("Identity/set", SUBMISSION, handle_identity_set)

