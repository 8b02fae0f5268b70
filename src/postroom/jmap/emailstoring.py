"""New Emails: Email/import (RFC 8621 §4.8) and the storing half of Email/set create
(§4.6, the message built by emailcreate.py).

Owns `store_new_email`, the one path both take, as IMAP APPEND stores a message: the size
limit (POSTFIX_MESSAGE_SIZE_LIMIT: tooLarge), keyword limits, room in every mailbox named
(overQuota), binary parts re-encoded as base64 (mail/reencode.py), the MIME tree computed
once and stored as meta (mail/mimetree.py), the blob made durable with the first row and
shared by the others, the quota warning when a level is crossed; then the Email's thread
id (threads.py), which the response carries.

Decisions: an import's blobId is an upload of the account (stored as it is when
re-encoding changes nothing: no copy), or a message/rfc822 part of a message the account
holds ("<blobId>_<part>", blobids.py); the blob of a message the account already holds
is alreadyExists with that Email's id (§4.8 lets a server refuse duplicates; an Email id
is its blob, so it could not be a second Email anyway). A blob the account cannot reach
is blobNotFound with `notFound` (§4.6). An empty blob is invalidProperties (blobId).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping
from typing import Any

from postroom.accounts.quota import announce_crossing
from postroom.jmap.blobids import parse_blob_id
from postroom.jmap.context import CallContext
from postroom.jmap.core import Call, Response
from postroom.jmap.emailbody import part_content
from postroom.jmap.emailcreate import build_message
from postroom.jmap.emailmeta import (
    BLOB_NOT_FOUND,
    check_state,
    flag_of_keyword,
    keyword_error,
    mailboxes_by_id,
    parse_keywords,
    parse_mailbox_ids,
    require_room,
)
from postroom.jmap.errors import (
    MethodError,
    MethodErrorType,
    SetError,
    SetErrorType,
    SetFailure,
    render_set_errors,
)
from postroom.jmap.standard import UnknownCreationId, resolve_creation_id
from postroom.jmap.threads import thread_ids
from postroom.jmap.types import (
    expect_id,
    expect_object,
    expect_string,
    is_id,
    optional,
    parse_utc_date,
    reject_unknown,
    required,
)
from postroom.mail.mimetree import message_meta
from postroom.mail.reencode import reencode_binary
from postroom.mail.searchtext import stored_meta
from postroom.runtime import Runtime
from postroom.store.api import Mailbox, NewMessage

META_ON_LOOP_LIMIT = 128 * 1024  # message bytes parsed on the event loop (as IMAP APPEND)
_IMPORT_MEMBERS = ("blobId", "mailboxIds", "keywords", "receivedAt")
_PLACEMENT = ("mailboxIds", "keywords", "receivedAt")


class AccountView:
    """One call's view of the account: its runtime, store id and mailboxes by JMAP id."""

    def __init__(self, call: Call[CallContext], boxes: dict[str, Mailbox]) -> None:
        self.call = call
        self.runtime: Runtime = call.context.jmap.runtime
        self.account_id = call.context.account.id
        self.boxes = boxes
        self.by_id = {box.id: box for box in boxes.values()}


def _not_found_blob(blob_id: str) -> SetFailure:
    return SetFailure(SetError(BLOB_NOT_FOUND, f"no blob {blob_id}",
                               extra={"notFound": [blob_id]}))  # fmt: skip


def _too_large(limit: int) -> SetFailure:
    return SetFailure(SetError(SetErrorType.TOO_LARGE, f"messages are at most {limit} bytes",
                               extra={"maxSize": limit}))  # fmt: skip


async def _part_bytes(view: AccountView, stored: str, part_id: str) -> bytes | None:
    store = view.runtime.store
    meta = stored_meta(await store.message_meta_for_blob(view.account_id, stored))
    if meta is None:
        return None
    return part_content(await view.runtime.blobs.read(stored), meta, part_id)


async def attachment_bytes(view: AccountView, blob_id: str, room: int) -> bytes | None:
    """A blob Email/set create may use: an upload, a message or a part of one the
    account holds (None when it holds none); tooLarge past `room` bytes, read or not."""
    parsed = parse_blob_id(blob_id)
    if parsed is None:
        return None
    stored, part_id = parsed
    store = view.runtime.store
    try:
        if part_id is not None:
            data = await _part_bytes(view, stored, part_id)
        else:
            upload = await store.jmap_upload(view.account_id, stored)
            rows = [] if upload is not None else (
                await store.jmap_emails(view.account_id, [stored])).get(stored, [])
            if upload is None and not rows:
                return None
            if (upload.size if upload is not None else rows[0].size) > room:
                raise _too_large(view.runtime.config.message_size_limit)
            data = await view.runtime.blobs.read(stored)
    except FileNotFoundError:
        return None
    if data is not None and len(data) > room:
        raise _too_large(view.runtime.config.message_size_limit)
    return data


async def _import_bytes(view: AccountView, blob_id: str) -> tuple[bytes, str | None]:
    """The message bytes an import's blobId names, and the blob they can be stored as
    unchanged (the upload's; None for a part, which needs a blob of its own)."""
    parsed = parse_blob_id(blob_id)
    if parsed is None:
        raise _not_found_blob(blob_id)
    store, (stored, part_id) = view.runtime.store, parsed
    try:
        if part_id is not None:
            content = await _part_bytes(view, stored, part_id)
            if content is None:
                raise _not_found_blob(blob_id)
            return content, None
        if await store.jmap_emails(view.account_id, [stored]):  # §4.8: no duplicates
            raise SetFailure(SetError.already_exists(stored, "that message is an Email here"))
        if await store.jmap_upload(view.account_id, stored) is None:
            raise _not_found_blob(blob_id)
        return await view.runtime.blobs.read(stored), stored
    except FileNotFoundError:
        raise _not_found_blob(blob_id) from None


def _prepare(data: bytes) -> tuple[bytes, str]:
    stored = reencode_binary(data)
    return stored, message_meta(stored)


async def store_new_email(view: AccountView, raw: bytes, targets: list[Mailbox],
                          keywords: Mapping[str, bool], when: dt.datetime, *,
                          upload: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Store `raw` in every mailbox of `targets` (module doc); the created Email's
    server-set properties (§4.6: id, blobId, threadId, size)."""
    runtime = view.runtime
    store, config = runtime.store, runtime.config
    if not raw:
        raise SetFailure(SetError.invalid_properties(["blobId"], "the message is empty"))
    if config.message_size_limit and len(raw) > config.message_size_limit:
        raise _too_large(config.message_size_limit)
    flags = frozenset(flag_of_keyword(keyword) for keyword in keywords)
    error = await keyword_error(store, config, targets, flags)
    if error is not None:
        raise SetFailure(error)
    rooms = [await require_room(store, config, box, messages=1, size=len(raw))
             for box in targets]  # fmt: skip
    data, meta = (_prepare(raw) if len(raw) <= META_ON_LOOP_LIMIT
                  else await asyncio.to_thread(_prepare, raw))  # fmt: skip
    new_id = upload if upload is not None and data == raw else runtime.blobs.new_id(len(data))
    message = NewMessage(new_id, len(data), when, flags, meta)
    body = None if new_id == upload else data
    for box, room in zip(targets, rooms, strict=True):
        try:
            await store.append_message(box.id, message, body=body)
        except BaseException:
            if body is not None:  # nothing holds the new blob: do not leave it behind
                await store.release_blob_if_unused(new_id)
            raise
        body = None  # written with the first row; the others share it
        await announce_crossing(store, runtime.blobs, config, room, size=len(data), messages=1)
    threads = await thread_ids(runtime, view.account_id, [new_id])
    return {"id": new_id, "blobId": new_id, "threadId": threads.get(new_id),
            "size": len(data)}


def _placement(view: AccountView, item: Mapping[str, Any]
               ) -> tuple[list[Mailbox], dict[str, bool], dt.datetime]:  # fmt: skip
    """mailboxIds, keywords and receivedAt of an import or a create, checked."""
    targets = parse_mailbox_ids(item.get("mailboxIds"), view.boxes, view.call.created_ids)
    if isinstance(targets, SetError):
        raise SetFailure(targets)
    keywords = parse_keywords(item.get("keywords") or {})
    if isinstance(keywords, SetError):
        raise SetFailure(keywords)
    received = item.get("receivedAt")
    try:
        when = dt.datetime.now(dt.UTC) if received is None else parse_utc_date(received)
    except (TypeError, ValueError, AttributeError):
        raise SetFailure(SetError.invalid_properties(["receivedAt"], "not a UTCDate")) from None
    return targets, keywords, when


# -- Email/set create (§4.6) --------------------------------------------------------------------


async def create_email(view: AccountView, record: dict[str, Any]) -> dict[str, Any]:
    """One Email/set create: the message built from `record`, then stored."""
    targets, keywords, when = _placement(view, record)
    config = view.runtime.config
    limit = config.message_size_limit

    async def blobs(blob_id: str, room: int) -> bytes | None:
        return await attachment_bytes(view, blob_id, room)

    content = {name: value for name, value in record.items() if name not in _PLACEMENT}
    raw = await build_message(content, blobs, size_limit=limit, hostname=config.hostname,
                              now=dt.datetime.now(dt.UTC))  # fmt: skip
    return await store_new_email(view, raw, targets, keywords, when)


# -- Email/import (§4.8) ------------------------------------------------------------------------


def _import_blob_id(view: AccountView, item: Mapping[str, Any]) -> str:
    unknown = sorted(set(item) - set(_IMPORT_MEMBERS))
    if unknown:
        raise SetFailure(SetError.invalid_properties(unknown, "unknown EmailImport members"))
    blob_id = item.get("blobId")
    if not isinstance(blob_id, str) or not is_id(blob_id.removeprefix("#")):
        raise SetFailure(SetError.invalid_properties(["blobId"], "blobId must be an Id"))
    try:
        return resolve_creation_id(blob_id, view.call.created_ids)
    except UnknownCreationId:
        raise _not_found_blob(blob_id) from None


async def _import_one(view: AccountView, item: Mapping[str, Any]) -> dict[str, Any]:
    blob_id = _import_blob_id(view, item)
    targets, keywords, when = _placement(view, item)
    raw, upload = await _import_bytes(view, blob_id)
    return await store_new_email(view, raw, targets, keywords, when, upload=upload)


def _import_args(call: Call[CallContext]) -> tuple[str, str | None, dict[str, Any]]:
    arguments = call.arguments
    reject_unknown(arguments, ("accountId", "ifInState", "emails"))
    account_id = required(arguments, "accountId", expect_id)
    if_in_state = optional(arguments, "ifInState", expect_string, None)
    emails = required(arguments, "emails", expect_object)
    for creation_id, item in emails.items():
        expect_id(creation_id, "emails key")
        expect_object(item, f"emails[{creation_id!r}]")
    if len(emails) > call.limits.max_objects_in_set:
        raise MethodError(MethodErrorType.REQUEST_TOO_LARGE,
                          f"more than {call.limits.max_objects_in_set} emails")
    return account_id, if_in_state, emails


async def handle_email_import(call: Call[CallContext]) -> list[Response]:
    account_id, if_in_state, emails = _import_args(call)
    account = call.context.require_account(account_id)
    store = call.context.jmap.runtime.store
    old_state = await check_state(store, account.id, if_in_state)
    view = AccountView(call, await mailboxes_by_id(store, account.id))
    created: dict[str, Any] = {}
    not_created: dict[str, SetError] = {}
    for creation_id, item in emails.items():
        try:
            created[creation_id] = await _import_one(view, item)
            call.created_ids[creation_id] = created[creation_id]["id"]
        except SetFailure as failure:
            not_created[creation_id] = failure.error
    return [("Email/import", {
        "accountId": account_id, "oldState": old_state,
        "newState": await store.jmap_state(account.id), "created": created or None,
        "notCreated": render_set_errors(not_created)})]
