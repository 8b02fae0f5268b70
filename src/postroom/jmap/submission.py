"""EmailSubmission/get, /changes, /query, /queryChanges and /set (RFC 8621 §7), and
`register` (the Identity methods are identities.py's).

Owns the EmailSubmission records: one per message sent (store JmapIdentityStore role,
migration 0030), created by EmailSubmission/set once submissionsend.py's checks passed
and SMTP submission's receiver took the message. Sending is immediate: undoStatus is
"final" at once (maxDelayedSend 0), so an update to "canceled" is cannotUnsend.
deliveryStatus is null (§7: "if not supported"): the queue does not report back per
submission; dsnBlobIds and mdnBlobIds are empty.

onSuccessUpdateEmail / onSuccessDestroyEmail (§7.5): after the creates, updates and
destroys, one implicit Email/set (the registered handler, emailset.py) runs with the
Emails of the submissions that succeeded, and its response follows ours under the same
method call id; without an Email/set registered it is an unknownMethod error there.

Decisions: submission ids are "S" + the row id, the state is the account's submission
counter; /query filters on identityIds, emailIds, threadIds, undoStatus, before/after
(on sendAt) and sorts on emailId, threadId and sentAt (sendAt), ties in creation order;
/queryChanges is always cannotCalculateChanges.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import Awaitable, Callable
from operator import attrgetter
from typing import Any

from postroom.checks.spoofing import SpoofingCheck
from postroom.delivery.recipients import RoleRoutes
from postroom.jmap.context import SUBMISSION, CallContext
from postroom.jmap.core import Call, MethodRegistry, Response
from postroom.jmap.errors import (
    MethodError,
    MethodErrorType,
    SetError,
    SetErrorType,
    SetFailure,
    invalid_arguments,
)
from postroom.jmap.identities import (
    current_identities,
    parse_identity_id,
    render_identity_id,
    render_set_response,
)
from postroom.jmap.standard import (
    Comparator,
    Filter,
    FilterOperator,
    Operator,
    UnknownCreationId,
    apply_patch,
    compute_query_window,
    is_creation_reference,
    parse_changes_args,
    parse_get_args,
    parse_query_args,
    parse_query_changes_args,
    parse_set_args,
    render_changes_response,
    render_get_response,
    render_query_response,
    resolve_creation_id,
    set_target,
)
from postroom.jmap.submissionsend import (
    MessageAcceptor,
    Outgoing,
    check_count,
    check_sender,
    derive_envelope,
    parse_envelope,
    path_address,
    read_email,
    received_message,
    refusal_error,
    resolve_recipients,
    without_bcc,
)
from postroom.jmap.threads import thread_ids
from postroom.jmap.types import (
    expect_object,
    is_id,
    parse_numbered_id,
    parse_utc_date,
    render_numbered_id,
    render_utc_date,
)
from postroom.runtime import Runtime
from postroom.store.api import Account
from postroom.store.errors import CannotCalculateChanges
from postroom.store.jmapidentities_api import JmapIdentity, JmapKind, JmapSubmission

log = logging.getLogger("postroom.jmap")

PROPERTIES = ("id", "identityId", "emailId", "threadId", "envelope", "sendAt", "undoStatus",
              "deliveryStatus", "dsnBlobIds", "mdnBlobIds")
_CREATE = frozenset({"identityId", "emailId", "envelope"})
_SERVER_SET = frozenset(PROPERTIES) - _CREATE - {"undoStatus"}
_SORTS = {"emailId": "email_id", "threadId": "thread_id", "sentAt": "send_at"}
_FILTERS = frozenset({"identityIds", "emailIds", "threadIds", "undoStatus", "before", "after"})
CANNOT_UNSEND = "cannotUnsend"  # §7.5
HEAD_ON_LOOP = 128 * 1024  # header bytes scanned on the event loop; more: a thread


def render_submission_id(submission_id: int) -> str:
    return render_numbered_id("S", submission_id)


def _parse_submission_id(text: str) -> int | None:
    return parse_numbered_id("S", text)


def render_submission(submission: JmapSubmission) -> dict[str, Any]:
    return {
        "id": render_submission_id(submission.id), "identityId": submission.identity_id,
        "emailId": submission.email_id, "threadId": submission.thread_id,
        "envelope": json.loads(submission.envelope),
        "sendAt": render_utc_date(submission.send_at), "undoStatus": submission.undo_status,
        "deliveryStatus": None, "dsnBlobIds": [], "mdnBlobIds": [],
    }


def _cannot_calculate(error: Exception) -> MethodError:
    return MethodError(MethodErrorType.CANNOT_CALCULATE_CHANGES, str(error))


# -- /get, /changes ---------------------------------------------------------------------------


async def handle_submission_get(call: Call[CallContext]) -> list[Response]:
    args = parse_get_args(call.arguments, call.limits, known_properties=PROPERTIES)
    account = call.context.require_account(args.account_id)
    state, submissions = await call.context.jmap.runtime.store.jmap_submissions(account.id)
    if args.ids is None and len(submissions) > call.limits.max_objects_in_get:
        raise MethodError(MethodErrorType.REQUEST_TOO_LARGE,
                          f"more than {call.limits.max_objects_in_get} submissions: ask"
                          " for ids")  # fmt: skip
    records = [render_submission(one) for one in submissions]
    return [("EmailSubmission/get", render_get_response(
        call.context.account_id, str(state), records, args.ids, args.properties))]


async def handle_submission_changes(call: Call[CallContext]) -> list[Response]:
    args = parse_changes_args(call.arguments, call.limits)
    account = call.context.require_account(args.account_id)
    try:
        changes = await call.context.jmap.runtime.store.jmap_object_changes(
            account.id, JmapKind.SUBMISSION, args.since_state, args.max_changes)
    except CannotCalculateChanges as error:
        raise _cannot_calculate(error) from None
    ids = [[render_submission_id(one) for one in group]
           for group in (changes.created, changes.updated, changes.destroyed)]
    return [("EmailSubmission/changes", render_changes_response(
        call.context.account_id, str(changes.old_state), str(changes.new_state),
        has_more_changes=False, created=ids[0], updated=ids[1], destroyed=ids[2]))]


# -- /query, /queryChanges (§7.3, §7.4) -------------------------------------------------------


Test = Callable[[JmapSubmission], bool]


def _member_test(attribute: str, wanted: frozenset[str]) -> Test:
    return lambda one: getattr(one, attribute) in wanted


def _time_test(name: str, moment: dt.datetime) -> Test:
    if name == "before":  # §7.3: sendAt before it; "after": the same as or after it
        return lambda one: one.send_at < moment
    return lambda one: one.send_at >= moment


def _condition(condition: dict[str, Any]) -> Test:
    """A FilterCondition as a predicate; unsupportedFilter for what §7.3 does not name."""
    unknown = sorted(set(condition) - _FILTERS)
    if unknown:
        raise MethodError(MethodErrorType.UNSUPPORTED_FILTER, "unknown: " + ", ".join(unknown))
    tests: list[Test] = []
    for name, attribute in (("identityIds", "identity_id"), ("emailIds", "email_id"),
                            ("threadIds", "thread_id")):
        if name in condition:
            wanted = condition[name]
            if not isinstance(wanted, list) or not all(is_id(one) for one in wanted):
                raise invalid_arguments(f"filter {name} must be an array of Ids")
            tests.append(_member_test(attribute, frozenset(wanted)))
    if "undoStatus" in condition:
        tests.append(_member_test("undo_status", frozenset([condition["undoStatus"]])))
    for name in ("before", "after"):
        if name in condition:
            try:
                moment = parse_utc_date(str(condition[name]))
            except ValueError:
                raise invalid_arguments(f"filter {name} must be a UTCDate") from None
            tests.append(_time_test(name, moment))
    return lambda one: all(test(one) for test in tests)


def _predicate(node: Filter) -> Test:
    if not isinstance(node, FilterOperator):
        return _condition(node)
    parts = [_predicate(child) for child in node.conditions]
    if node.operator is Operator.AND:
        return lambda one: all(part(one) for part in parts)
    if node.operator is Operator.OR:
        return lambda one: any(part(one) for part in parts)
    return lambda one: not any(part(one) for part in parts)


def _sorted(submissions: list[JmapSubmission],
            sort: tuple[Comparator, ...]) -> list[JmapSubmission]:  # fmt: skip
    ordered = sorted(submissions, key=lambda one: one.id)  # ties: creation order
    for comparator in reversed(sort):  # stable sorts, the last key first
        attribute = _SORTS.get(comparator.property)
        if attribute is None or comparator.extra:
            raise MethodError(MethodErrorType.UNSUPPORTED_SORT,
                              f"cannot sort on {comparator.property}")
        ordered.sort(key=attrgetter(attribute), reverse=not comparator.is_ascending)
    return ordered


async def handle_submission_query(call: Call[CallContext]) -> list[Response]:
    args = parse_query_args(call.arguments, call.limits)
    account = call.context.require_account(args.account_id)
    state, submissions = await call.context.jmap.runtime.store.jmap_submissions(account.id)
    matches = _predicate(args.filter) if args.filter is not None else (lambda one: True)
    found = [render_submission_id(one.id)
             for one in _sorted([one for one in submissions if matches(one)], args.sort)]
    window = compute_query_window(found, position=args.position, anchor=args.anchor,
                                  anchor_offset=args.anchor_offset, limit=args.limit,
                                  max_limit=call.limits.max_query_limit)
    return [("EmailSubmission/query", render_query_response(
        call.context.account_id, str(state), window, can_calculate_changes=False,
        total=len(found) if args.calculate_total else None))]


async def handle_submission_query_changes(call: Call[CallContext]) -> list[Response]:
    args = parse_query_changes_args(call.arguments, call.limits)
    call.context.require_account(args.account_id)
    raise MethodError(MethodErrorType.CANNOT_CALCULATE_CHANGES,
                      "EmailSubmission queries are not tracked: query again")


# -- /set (§7.5) ------------------------------------------------------------------------------


class _SubmissionSet:
    """One EmailSubmission/set call: creates, then updates, then destroys."""

    def __init__(self, call: Call[CallContext], account: Account, acceptor: MessageAcceptor,
                 submissions: list[JmapSubmission]) -> None:  # fmt: skip
        self.call = call
        self.account = account
        self.acceptor = acceptor
        self.by_id = {one.id: one for one in submissions}
        self.identities: dict[int, JmapIdentity] = {}
        self.created: dict[str, Any] = {}
        self.updated: dict[str, Any] = {}
        self.destroyed: list[str] = []
        self.errors: dict[str, dict[str, SetError]] = {
            "notCreated": {}, "notUpdated": {}, "notDestroyed": {}}
        self.succeeded: dict[str, str] = {}  # "S1" or "#creation id" → its Email's id

    @property
    def runtime(self) -> Runtime:
        return self.call.context.jmap.runtime

    def _reference(self, record: dict[str, Any], name: str) -> str:
        value = record.get(name)
        try:
            if isinstance(value, str) and is_creation_reference(value):
                value = resolve_creation_id(value, self.call.created_ids)
        except UnknownCreationId:
            value = None
        if not is_id(value):
            raise SetFailure(SetError.invalid_properties([name], f"{name} names nothing"))
        return str(value)

    def _identity(self, record: dict[str, Any]) -> JmapIdentity:
        identity_id = parse_identity_id(self._reference(record, "identityId"))
        if identity_id is None or identity_id not in self.identities:
            raise SetFailure(SetError.invalid_properties(["identityId"], "no such identity"))
        return self.identities[identity_id]

    async def _email(self, email_id: str) -> bytes:
        store, config = self.runtime.store, self.call.context.jmap.config
        copies = (await store.jmap_emails(self.account.id, [email_id])).get(email_id)
        if not copies:
            raise SetFailure(SetError.invalid_properties(["emailId"], "no such Email"))
        limit = config.message_size_limit
        if limit and copies[0].size > limit:
            raise SetFailure(SetError(SetErrorType.TOO_LARGE, f"over {limit} bytes",
                                      extra={"maxSize": limit}))
        try:
            raw: bytes = await self.runtime.blobs.read(email_id)
        except FileNotFoundError:
            raise SetFailure(SetError.invalid_properties(["emailId"], "no such Email")) \
                from None
        return raw

    async def _outgoing(self, record: dict[str, Any], identity: JmapIdentity,
                        raw: bytes) -> Outgoing:  # fmt: skip
        config = self.call.context.jmap.config
        hostname = config.hostname
        if len(raw) <= HEAD_ON_LOOP:
            header, body, facts = read_email(raw, hostname)
        else:
            header, body, facts = await asyncio.to_thread(read_email, raw, hostname)
        envelope = parse_envelope(record["envelope"]) if record.get("envelope") is not None \
            else derive_envelope(header, facts)
        check_count(envelope)
        store = self.runtime.store
        if config.spoof_protection:
            await check_sender(SpoofingCheck(config, store), self.account, identity,
                               envelope, facts)
        elif envelope.mail_from and path_address(envelope.mail_from) is None:
            raise SetFailure(SetError.invalid_properties(["envelope"], "mailFrom: no address"))
        recipients = await resolve_recipients(store, RoleRoutes.from_config(config),
                                              envelope, self.acceptor.has_outbound)
        data = without_bcc(header, body)
        if config.message_size_limit and len(data) > config.message_size_limit:
            raise SetFailure(SetError(SetErrorType.TOO_LARGE, "over the size limit",
                                      extra={"maxSize": config.message_size_limit}))
        return Outgoing(envelope, recipients, data)

    async def create(self, creation_id: str, record: dict[str, Any]) -> None:
        wrong = sorted(name for name in record if name not in _CREATE and not (
            name in _SERVER_SET and record[name] in (None, []))
            and not (name == "undoStatus" and record[name] == "final"))
        if wrong:  # §7: the rest is the server's; only final sends are made here
            raise SetFailure(SetError.invalid_properties(wrong, "not settable"))
        identity = self._identity(record)
        email_id = self._reference(record, "emailId")
        outgoing = await self._outgoing(record, identity, await self._email(email_id))
        thread = (await thread_ids(self.runtime, self.account.id, [email_id])).get(
            email_id, "T" + email_id)
        now = dt.datetime.now(dt.UTC)
        message = received_message(self.acceptor, self.account, outgoing, now)
        reply = await self.acceptor.accept(message)
        log.info("jmap submission user=%s queue_id=%s sender=<%s> rcpts=%s result=%d %s",
                 self.account.address, message.queue_id, outgoing.envelope.mail_from,
                 ",".join(f"<{one}>" for one in outgoing.envelope.rcpt_to), reply.code,
                 reply.text)
        if reply.code >= 400:
            raise SetFailure(refusal_error(reply, self.call.context.jmap.config
                                           .message_size_limit))
        made = await self.runtime.store.jmap_add_submission(JmapSubmission(
            0, self.account.id, render_identity_id(identity.id), email_id, thread,
            outgoing.envelope.to_json(), now, "final"))
        self.by_id[made.id] = made
        submission_id = render_submission_id(made.id)
        self.call.created_ids[creation_id] = submission_id
        rendered = render_submission(made)
        self.created[creation_id] = {name: rendered[name] for name in (
            "id", "threadId", "sendAt", "undoStatus", "deliveryStatus", "dsnBlobIds",
            "mdnBlobIds")}
        self.succeeded["#" + creation_id] = self.succeeded[submission_id] = email_id

    def _target(self, key: str) -> JmapSubmission:
        return set_target(key, self.call.created_ids, _parse_submission_id, self.by_id)

    async def update(self, key: str, patch: dict[str, Any]) -> None:
        submission = self._target(key)
        before = render_submission(submission)
        after = apply_patch(before, patch)
        changed = sorted(name for name in set(before) | set(after)
                         if before.get(name) != after.get(name))
        if changed == ["undoStatus"] and after["undoStatus"] == "canceled":
            raise SetFailure(SetError(CANNOT_UNSEND, "the message has been sent"))
        if changed:  # everything else is immutable or the server's (§7)
            raise SetFailure(SetError.invalid_properties(changed, "cannot be changed"))
        self.updated[render_submission_id(submission.id)] = None
        self.succeeded[key] = submission.email_id

    async def destroy(self, key: str) -> None:
        submission = self._target(key)
        store = self.runtime.store
        if not await store.jmap_destroy_submission(self.account.id, submission.id):
            raise SetFailure(SetError(SetErrorType.NOT_FOUND))
        del self.by_id[submission.id]
        self.destroyed.append(render_submission_id(submission.id))
        self.succeeded[key] = submission.email_id


def _parse_on_success(arguments: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """onSuccessUpdateEmail (Id[PatchObject]) and onSuccessDestroyEmail (Id[]), keyed by
    submission ids or "#creation-id" references."""
    updates = arguments.get("onSuccessUpdateEmail")
    updates = {} if updates is None else expect_object(updates, "onSuccessUpdateEmail")
    destroys = arguments.get("onSuccessDestroyEmail")
    destroys = [] if destroys is None else destroys
    if not isinstance(destroys, list):
        raise invalid_arguments("onSuccessDestroyEmail must be an array of Ids")
    for key in [*updates, *destroys]:
        if not isinstance(key, str) or not is_id(key.removeprefix("#")):
            raise invalid_arguments("onSuccess* must name submissions by Id or #creation id")
    for patch in updates.values():
        expect_object(patch, "onSuccessUpdateEmail value")
    return updates, [str(one) for one in destroys]


async def _implicit_email_set(call: Call[CallContext], work: _SubmissionSet,
                              updates: dict[str, Any],
                              destroys: list[str]) -> list[Response]:  # fmt: skip
    """§7.5: one Email/set for the Emails of the submissions that succeeded."""
    update = {work.succeeded[key]: patch for key, patch in updates.items()
              if key in work.succeeded}
    destroy = list(dict.fromkeys(work.succeeded[key] for key in destroys
                                 if key in work.succeeded))
    if not update and not destroy:
        return []
    method = call.context.jmap.registry.methods.get("Email/set")
    if method is None:
        return [("error", MethodError(MethodErrorType.UNKNOWN_METHOD,
                                      "Email/set is not served").render_arguments())]
    implicit = Call("Email/set", {"accountId": call.context.account_id, "update": update,
                                  "destroy": destroy}, call.call_id, call.using,
                    call.created_ids, call.limits, call.context)
    try:
        return await method.handler(implicit)
    except MethodError as error:
        return [("error", error.render_arguments())]


async def handle_submission_set(call: Call[CallContext],
                                acceptor: MessageAcceptor) -> list[Response]:  # fmt: skip
    args = parse_set_args(call.arguments, call.limits,
                          extra=("onSuccessUpdateEmail", "onSuccessDestroyEmail"))
    account = call.context.require_account(args.account_id)
    updates, destroys = _parse_on_success(dict(args.extra))
    store = call.context.jmap.runtime.store
    state, submissions = await store.jmap_submissions(account.id)
    if args.if_in_state is not None and args.if_in_state != str(state):
        raise MethodError(MethodErrorType.STATE_MISMATCH, f"the state is {state}")
    work = _SubmissionSet(call, account, acceptor, submissions)
    if args.create:
        _, found = await current_identities(call, account)
        work.identities = {identity.id: identity for identity in found}
    for creation_id, record in args.create.items():
        await _attempt(work.create(creation_id, record), work.errors["notCreated"],
                       creation_id)
    for key, patch in args.update.items():
        await _attempt(work.update(key, patch), work.errors["notUpdated"], key)
    for key in args.destroy:
        await _attempt(work.destroy(key), work.errors["notDestroyed"], key)
    new_state, _ = await store.jmap_submissions(account.id)
    response = render_set_response(call.context.account_id, str(state), str(new_state),
                                   work.created, work.updated, work.destroyed, work.errors)
    return [("EmailSubmission/set", response),
            *await _implicit_email_set(call, work, updates, destroys)]


async def _attempt(step: Awaitable[None], errors: dict[str, SetError], key: str) -> None:
    try:
        await step
    except SetFailure as failure:
        errors[key] = failure.error


def register(registry: MethodRegistry[CallContext], acceptor: MessageAcceptor) -> None:
    """The EmailSubmission methods; `acceptor` is SMTP submission's receiver (app.py:
    `Receiver(runtime, queue, Pipeline(inbound_checks(runtime)))`, smtp/receive.py)."""

    async def handle_set(call: Call[CallContext]) -> list[Response]:
        return await handle_submission_set(call, acceptor)

    registry.register("EmailSubmission/get", SUBMISSION, handle_submission_get)
    registry.register("EmailSubmission/changes", SUBMISSION, handle_submission_changes)
    registry.register("EmailSubmission/query", SUBMISSION, handle_submission_query)
    registry.register("EmailSubmission/queryChanges", SUBMISSION,
                      handle_submission_query_changes)
    registry.register("EmailSubmission/set", SUBMISSION, handle_set)
