"""Email/get, Email/changes, Thread/get and Thread/changes (RFC 8621 §3, §4.2, §4.3), and
`register`, which adds every Email and Thread method (emailset.py, emailquery.py too).

Owns rendering an Email: the metadata properties from the store (id = blobId = the
message's blob id, threadId, mailboxIds, keywords, size, receivedAt: emailmeta.py) and
every other property from the message's bytes (emailview.email_properties), a part's
blobId spelled by blobids.part_blob_id (the download route serves it).

Decisions: one state string per account serves Email and Thread (decision 0057);
`ids: null` lists every Email (or Thread) of the account up to maxObjectsInGet and is
requestTooLarge beyond. A message read only for header properties reads HEAD_READ bytes
first. Thread/changes derives from Email/changes: a thread is created when every Email of
it now is new since the state and none of it went, destroyed when none of its Emails is
left, else updated; Emails whose flags or mailboxes changed leave their thread as it is.
Invariants: thread ids are assigned (threads.py) before any is shown; an Email whose
bytes are gone by the time it is read is notFound, never a half-rendered object.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from postroom.jmap import emailquery, emailset
from postroom.jmap.blobids import part_blob_id
from postroom.jmap.context import MAIL, CallContext
from postroom.jmap.core import Call, MethodRegistry, Response
from postroom.jmap.emailheaders import InvalidArguments
from postroom.jmap.emailmeta import (
    EmailRecord,
    account_blob_ids,
    cannot_calculate,
    load_emails,
)
from postroom.jmap.emailview import (
    BODY_PROPERTIES,
    METADATA_PROPERTIES,
    email_properties,
    validate_body_properties,
    validate_properties,
)
from postroom.jmap.errors import MethodError, MethodErrorType, invalid_arguments
from postroom.jmap.standard import (
    parse_changes_args,
    parse_get_args,
    render_changes_response,
    render_get_response,
)
from postroom.jmap.threads import assign_threads, thread_ids
from postroom.jmap.types import (
    expect_bool,
    expect_string_list,
    expect_unsigned_int,
    optional,
    render_utc_date,
)
from postroom.mail.headers import find_body_start
from postroom.mail.searchtext import stored_meta
from postroom.store.errors import CannotCalculateChanges, TooManyChanges

HEAD_READ = 256 * 1024  # bytes read first when only header properties are asked
PARSE_ON_LOOP = 128 * 1024  # message bytes rendered on the event loop; more: a thread
MAX_THREAD_SCAN = 100_000  # Emails Thread/get with ids null looks at for thread ids
_GET_EXTRA = ("bodyProperties", "fetchTextBodyValues", "fetchHTMLBodyValues",
              "fetchAllBodyValues", "maxBodyValueBytes")  # fmt: skip


# -- Email/get (§4.2) -------------------------------------------------------------------------


class _BodyArgs:
    """Email/get's own arguments, checked."""

    def __init__(self, arguments: dict[str, Any]) -> None:
        try:
            self.body_properties = validate_body_properties(
                optional(arguments, "bodyProperties", expect_string_list, None))
        except InvalidArguments as error:
            raise invalid_arguments(str(error)) from None
        self.fetch_text = optional(arguments, "fetchTextBodyValues", expect_bool, False)
        self.fetch_html = optional(arguments, "fetchHTMLBodyValues", expect_bool, False)
        self.fetch_all = optional(arguments, "fetchAllBodyValues", expect_bool, False)
        self.max_bytes = optional(arguments, "maxBodyValueBytes", expect_unsigned_int, 0)
        if "maxBodyValueBytes" in arguments and self.max_bytes == 0:
            raise invalid_arguments("maxBodyValueBytes must be greater than 0")  # §4.2


def render_metadata(record: EmailRecord, thread_id: str | None,
                    properties: Sequence[str]) -> dict[str, Any]:  # fmt: skip
    values: dict[str, Any] = {
        "id": record.blob_id, "blobId": record.blob_id, "threadId": thread_id,
        "mailboxIds": {box: True for box in sorted(record.mailbox_ids)},
        "keywords": record.keywords, "size": record.size,
        "receivedAt": render_utc_date(record.received),
    }
    return {name: values[name] for name in ("id", *properties) if name in METADATA_PROPERTIES}


async def _message_bytes(call: Call[CallContext], blob_id: str, wanted: list[str]) -> bytes:
    blobs = call.context.jmap.runtime.blobs
    if any(name in BODY_PROPERTIES for name in wanted):
        return await blobs.read(blob_id)
    head = await blobs.read(blob_id, limit=HEAD_READ)
    if len(head) == HEAD_READ and find_body_start(head) == len(head):
        return await blobs.read(blob_id)  # the header goes on past what was read
    return head


async def _content(call: Call[CallContext], record: EmailRecord, properties: Sequence[str],
                   body: _BodyArgs) -> dict[str, Any] | None:  # fmt: skip
    """The properties read from the message's bytes; None when they are gone."""
    wanted = [name for name in properties if name not in METADATA_PROPERTIES]
    if not wanted:
        return {}
    try:
        raw = await _message_bytes(call, record.blob_id, wanted)
    except FileNotFoundError:
        return None
    meta = None
    if any(name in BODY_PROPERTIES for name in wanted):
        store = call.context.jmap.runtime.store
        meta = stored_meta(await store.message_meta_for_blob(call.context.account.id,
                                                             record.blob_id))  # fmt: skip

    def render() -> dict[str, Any]:
        return email_properties(
            raw, properties=wanted, body_properties=body.body_properties,
            fetch_text=body.fetch_text, fetch_html=body.fetch_html, fetch_all=body.fetch_all,
            max_body_value_bytes=body.max_bytes, meta=meta,
            part_blob_id=lambda part_id: part_blob_id(record.blob_id, part_id))  # fmt: skip

    return render() if len(raw) <= PARSE_ON_LOOP else await asyncio.to_thread(render)


async def _requested_ids(call: Call[CallContext], ids: list[str] | None) -> list[str]:
    if ids is not None:
        return ids
    limit = call.limits.max_objects_in_get
    every = await account_blob_ids(call.context.jmap.runtime.store, call.context.account.id,
                                   limit)  # fmt: skip
    if every is None:
        raise MethodError(MethodErrorType.REQUEST_TOO_LARGE,
                          f"the account has more than {limit} Emails; ask for ids")
    return every


async def handle_email_get(call: Call[CallContext]) -> list[Response]:
    args = parse_get_args(call.arguments, call.limits, extra=_GET_EXTRA)
    account = call.context.require_account(args.account_id)
    try:
        properties = validate_properties(args.properties)
    except InvalidArguments as error:
        raise invalid_arguments(str(error)) from None
    body = _BodyArgs(call.arguments)
    runtime = call.context.jmap.runtime
    state = await runtime.store.jmap_state(account.id)
    ids = await _requested_ids(call, args.ids)
    records = await load_emails(runtime.store, account.id, ids)
    threads = await thread_ids(runtime, account.id, list(records)) if (
        "threadId" in properties) else {}
    found = []
    for blob_id, record in records.items():
        content = await _content(call, record, properties, body)
        if content is not None:
            found.append({**render_metadata(record, threads.get(blob_id), properties),
                          **content})  # fmt: skip
    response = render_get_response(args.account_id, state, found, ids, None)
    response["list"] = [_ordered(item, properties) for item in response["list"]]
    return [("Email/get", response)]


def _ordered(item: dict[str, Any], properties: Sequence[str]) -> dict[str, Any]:
    """The properties in the order asked for, "id" always there (RFC 8620 §5.1)."""
    return {"id": item["id"], **{name: item[name] for name in properties if name in item}}


# -- Email/changes (§4.3) ---------------------------------------------------------------------


async def handle_email_changes(call: Call[CallContext]) -> list[Response]:
    args = parse_changes_args(call.arguments, call.limits)
    account = call.context.require_account(args.account_id)
    store = call.context.jmap.runtime.store
    try:
        changes = await store.jmap_email_changes(account.id, args.since_state, args.max_changes)
    except (CannotCalculateChanges, TooManyChanges) as error:
        raise cannot_calculate(error) from None
    return [("Email/changes", render_changes_response(
        args.account_id, changes.old_state, changes.new_state, has_more_changes=False,
        created=changes.created, updated=changes.updated, destroyed=changes.destroyed))]


# -- Thread/get and Thread/changes (§3.1, §3.2) -----------------------------------------------


async def _all_thread_ids(call: Call[CallContext]) -> list[str]:
    runtime = call.context.jmap.runtime
    every = await account_blob_ids(runtime.store, call.context.account.id, MAX_THREAD_SCAN)
    if every is None:
        raise MethodError(MethodErrorType.REQUEST_TOO_LARGE, "too many Emails; ask for ids")
    threads = await runtime.store.jmap_thread_ids(call.context.account.id, every)
    distinct = sorted(set(threads.values()))
    if len(distinct) > call.limits.max_objects_in_get:
        raise MethodError(MethodErrorType.REQUEST_TOO_LARGE,
                          f"more than {call.limits.max_objects_in_get} threads; ask for ids")
    return distinct


async def handle_thread_get(call: Call[CallContext]) -> list[Response]:
    args = parse_get_args(call.arguments, call.limits, known_properties=("id", "emailIds"))
    account = call.context.require_account(args.account_id)
    runtime = call.context.jmap.runtime
    state = await runtime.store.jmap_state(account.id)
    await assign_threads(runtime, account.id)
    ids = args.ids if args.ids is not None else await _all_thread_ids(call)
    emails = await runtime.store.jmap_thread_emails(account.id, ids)
    records = [{"id": thread_id, "emailIds": blob_ids} for thread_id, blob_ids in emails.items()]
    return [("Thread/get", render_get_response(args.account_id, state, records, ids,
                                               args.properties))]  # fmt: skip


def classify_threads(created: set[str], gone: set[str], touched: dict[str, set[str]],
                     now: dict[str, list[str]]) -> tuple[list[str], list[str], list[str]]:
    """(created, updated, destroyed) threads: `touched` maps each thread to its Emails
    created or destroyed since the state, `now` to its Emails that exist now."""
    made: list[str] = []
    changed: list[str] = []
    ended: list[str] = []
    for thread_id in sorted(touched):
        present = now.get(thread_id, [])
        if not present:
            if touched[thread_id] & gone:  # a thread only created and emptied since: none
                ended.append(thread_id)
        elif set(present) <= created and not touched[thread_id] & gone:
            made.append(thread_id)
        else:
            changed.append(thread_id)
    return made, changed, ended


async def handle_thread_changes(call: Call[CallContext]) -> list[Response]:
    args = parse_changes_args(call.arguments, call.limits)
    account = call.context.require_account(args.account_id)
    runtime = call.context.jmap.runtime
    try:
        changes = await runtime.store.jmap_email_changes(account.id, args.since_state, None)
    except (CannotCalculateChanges, TooManyChanges) as error:
        raise cannot_calculate(error) from None
    created, gone = set(changes.created), set(changes.destroyed)
    owners = await thread_ids(runtime, account.id, sorted(created | gone))
    touched: dict[str, set[str]] = {}
    for blob_id, thread_id in owners.items():
        touched.setdefault(thread_id, set()).add(blob_id)
    now = await runtime.store.jmap_thread_emails(account.id, sorted(touched))
    made, changed, ended = classify_threads(created, gone, touched, now)
    if args.max_changes is not None and len(made) + len(changed) + len(ended) > args.max_changes:
        raise MethodError(MethodErrorType.CANNOT_CALCULATE_CHANGES,
                          "more thread changes than maxChanges since that state")
    return [("Thread/changes", render_changes_response(
        args.account_id, changes.old_state, changes.new_state, has_more_changes=False,
        created=made, updated=changed, destroyed=ended))]


# -- registration -----------------------------------------------------------------------------


def register(registry: MethodRegistry[CallContext]) -> None:
    """Every Email and Thread method of RFC 8621 that postroom serves."""
    registry.register("Email/get", MAIL, handle_email_get)
    registry.register("Email/changes", MAIL, handle_email_changes)
    registry.register("Thread/get", MAIL, handle_thread_get)
    registry.register("Thread/changes", MAIL, handle_thread_changes)
    emailquery.register(registry)
    emailset.register(registry)
