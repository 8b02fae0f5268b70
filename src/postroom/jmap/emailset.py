"""Email/set and Email/copy (RFC 8621 §4.6, §4.7); registers Email/import (emailstoring.py).

Owns changing Emails through the same store operations IMAP uses:
- keywords (the whole map, or "keywords/<keyword>" patches) become STOREs of the
  matching flags on every row of the Email (emailmeta.py's mapping; \\Deleted and
  \\Recent are left as they are);
- mailboxIds (the whole map, or "mailboxIds/<id>" patches): the Email is moved
  (store.move_messages, so the row keeps its blob and the Email its id) from a mailbox it
  leaves into one it joins, copied into other new ones, and expunged from other left
  ones; copies and moves come first, so the Email is never in no mailbox. An Email must
  stay in one mailbox at least (invalidProperties);
- destroy expunges every row of the Email;
- create builds the message from the Email's properties (emailcreate.py) and stores it
  as Email/import does (emailstoring.py, which also serves Email/import, §4.8);
- Email/copy (§4.7) is between accounts only, and a user has one account: the only
  answers are fromAccountNotFound and accountNotFound.

Limits, checked before each write as IMAP APPEND/COPY/STORE check them: a message over
POSTFIX_MESSAGE_SIZE_LIMIT is tooLarge; a mailbox or account without room overQuota
(delivery/local.py); keywords over MAX_KEYWORD_LENGTH invalidProperties, over the
per-message bytes or MAX_KEYWORDS_PER_MAILBOX tooManyKeywords. Copies, creates and
imports that cross a quota warning level deliver the warning (accounts/quota.py).

Invariants: a failed record leaves the others to go on (§5.3); every update validates the
whole patch before writing anything; creates are processed first, then updates, then
destroys, and "#creation-id" targets resolve against ids created earlier in the request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from postroom.accounts.quota import announce_crossing
from postroom.jmap.context import MAIL, CallContext
from postroom.jmap.core import Call, MethodRegistry, Response
from postroom.jmap.emailmeta import (
    EmailRecord,
    check_state,
    flag_of_keyword,
    keyword_error,
    keyword_of_flag,
    load_emails,
    mailboxes_by_id,
    parse_keywords,
    parse_mailbox_ids,
    require_room,
)
from postroom.jmap.emailstoring import AccountView, create_email, handle_email_import
from postroom.jmap.errors import (
    MethodError,
    MethodErrorType,
    SetError,
    SetErrorType,
    SetFailure,
    render_set_errors,
)
from postroom.jmap.standard import (
    UnknownCreationId,
    apply_patch,
    parse_copy_args,
    parse_set_args,
    resolve_creation_id,
)
from postroom.store.api import FlagMode, Mailbox

_PATCHABLE = ("keywords", "mailboxIds")


class _Writer(AccountView):
    """One Email/set call's changes to existing Emails."""

    # -- keywords ---------------------------------------------------------------------------

    async def set_keywords(self, record: EmailRecord, keywords: Mapping[str, bool]) -> None:
        """Make every row's shown flags exactly `keywords` (emailmeta's mapping)."""
        wanted = {flag_of_keyword(keyword) for keyword in keywords}
        store = self.runtime.store
        for copy in record.copies:
            shown = {flag for flag in copy.flags if keyword_of_flag(flag) is not None}
            removing = {flag for flag in shown if keyword_of_flag(flag) not in keywords}
            adding = {flag for flag in wanted if keyword_of_flag(flag) not in {
                keyword_of_flag(one) for one in shown - removing}}
            if removing:
                await store.store_flags(copy.mailbox_id, [copy.uid], frozenset(removing),
                                        FlagMode.REMOVE)  # fmt: skip
            if adding:
                await store.store_flags(copy.mailbox_id, [copy.uid], frozenset(adding),
                                        FlagMode.ADD)  # fmt: skip

    async def check_keywords(self, keywords: Mapping[str, bool], boxes: list[Mailbox], *,
                             had: Mapping[str, bool]) -> None:  # fmt: skip
        """The keyword limits for an Email that will carry `keywords` in `boxes`, where
        it carried `had` (those count as already in use there)."""
        flags = frozenset(flag_of_keyword(keyword) for keyword in keywords)
        new = frozenset(flag_of_keyword(keyword) for keyword in keywords if keyword not in had)
        error = await keyword_error(self.runtime.store, self.runtime.config, boxes, flags,
                                    adding=new)  # fmt: skip
        if error is not None:
            raise SetFailure(error)

    # -- mailboxes --------------------------------------------------------------------------

    async def set_mailboxes(self, record: EmailRecord, targets: list[Mailbox]) -> None:
        """Copy, move and expunge so that the Email is in exactly `targets`."""
        store, config = self.runtime.store, self.runtime.config
        current = {copy.mailbox_id for copy in record.copies}
        joining = [box for box in targets if box.id not in current]
        leaving = [copy for copy in record.copies  # every row there: a mailbox may hold two
                   if copy.mailbox_id not in {box.id for box in targets}]  # fmt: skip
        moves = list(zip(leaving, joining, strict=False))
        copies = joining[len(moves):]
        rooms = [await require_room(store, config, box, messages=1, size=record.size)
                 for box in copies]  # fmt: skip
        for _, box in moves:
            await require_room(store, config, box, messages=1, size=record.size,
                               adds_size=False)  # fmt: skip
        source = record.copies[0]
        for box, room in zip(copies, rooms, strict=True):
            result = await store.copy_messages(source.mailbox_id, [source.uid], box.id)
            await self._filed(source.mailbox_id, box, result.target_uids)
            await announce_crossing(store, self.runtime.blobs, config, room, size=record.size,
                                    messages=len(result.target_uids))  # fmt: skip
        for copy, box in moves:
            result = await store.move_messages(copy.mailbox_id, [copy.uid], box.id)
            await self._filed(copy.mailbox_id, box, result.target_uids)
        for copy in leaving[len(moves):]:
            await store.expunge(copy.mailbox_id, [copy.uid])

    async def _filed(self, source_id: int, target: Mailbox, uids: tuple[int, ...]) -> None:
        # Into or out of Junk trains the junk filter, as an IMAP COPY/MOVE does (issue 18).
        junk, source = self.runtime.junk, self.by_id.get(source_id)
        if junk is not None and source is not None and uids:
            await junk.on_filed(self.account_id, source, target, uids)

    async def destroy(self, record: EmailRecord) -> None:
        by_box: dict[int, list[int]] = {}
        for copy in record.copies:
            by_box.setdefault(copy.mailbox_id, []).append(copy.uid)
        for mailbox_id, uids in by_box.items():
            await self.runtime.store.expunge(mailbox_id, uids)


# -- Email/set update (§4.6) --------------------------------------------------------------------


def _normalised_patch(patch: Mapping[str, Any]) -> dict[str, Any]:
    """The patch with keyword paths lower-cased; invalidProperties for other properties
    (every other Email property is immutable, §4.1)."""
    bad = sorted(key for key in patch if key.split("/", 1)[0] not in _PATCHABLE)
    if bad:
        raise SetFailure(SetError.invalid_properties(bad, "only keywords and mailboxIds change"))
    return {(key.lower() if key.startswith("keywords/") else key): value
            for key, value in patch.items()}  # fmt: skip


async def _update(writer: _Writer, record: EmailRecord, patch: Mapping[str, Any]) -> None:
    now = {"keywords": record.keywords,
           "mailboxIds": {box: True for box in record.mailbox_ids}}  # fmt: skip
    patched = apply_patch(now, _normalised_patch(patch))
    keywords = parse_keywords(patched.get("keywords", {}))
    if isinstance(keywords, SetError):
        raise SetFailure(keywords)
    targets = parse_mailbox_ids(patched.get("mailboxIds"), writer.boxes,
                                writer.call.created_ids)  # fmt: skip
    if isinstance(targets, SetError):
        raise SetFailure(targets)
    if keywords != record.keywords:
        await writer.check_keywords(keywords, targets, had=record.keywords)
    if {box.object_id for box in targets} != record.mailbox_ids:
        joining = [box for box in targets if box.object_id not in record.mailbox_ids]
        await writer.check_keywords(record.keywords, joining, had={})
        await writer.set_mailboxes(record, targets)
        store = writer.runtime.store
        record = (await load_emails(store, writer.account_id, [record.blob_id]))[record.blob_id]
    if keywords != record.keywords:
        await writer.set_keywords(record, keywords)


def _target(value: str, created_ids: Mapping[str, str]) -> str:
    try:
        return resolve_creation_id(value, created_ids)
    except UnknownCreationId:
        raise SetFailure(SetError(SetErrorType.NOT_FOUND, f"no creation id {value}")) from None


async def _updates(writer: _Writer, update: Mapping[str, dict[str, Any]],
                   ) -> tuple[dict[str, Any], dict[str, SetError]]:  # fmt: skip
    done: dict[str, Any] = {}
    failed: dict[str, SetError] = {}
    for key, patch in update.items():
        try:
            blob_id = _target(key, writer.call.created_ids)
            found = await load_emails(writer.runtime.store, writer.account_id, [blob_id])
            if blob_id not in found:
                raise SetFailure(SetError(SetErrorType.NOT_FOUND))
            await _update(writer, found[blob_id], patch)
            done[blob_id] = None
        except SetFailure as failure:
            failed[key] = failure.error
    return done, failed


async def _destroys(writer: _Writer, destroy: list[str]) -> tuple[list[str], dict[str, SetError]]:
    done: list[str] = []
    failed: dict[str, SetError] = {}
    for key in destroy:
        try:
            blob_id = _target(key, writer.call.created_ids)
            found = await load_emails(writer.runtime.store, writer.account_id, [blob_id])
            if blob_id not in found:
                raise SetFailure(SetError(SetErrorType.NOT_FOUND))
            await writer.destroy(found[blob_id])
            done.append(blob_id)
        except SetFailure as failure:
            failed[key] = failure.error
    return done, failed


async def _creates(writer: _Writer, create: Mapping[str, dict[str, Any]],
                   ) -> tuple[dict[str, Any], dict[str, SetError]]:  # fmt: skip
    done: dict[str, Any] = {}
    failed: dict[str, SetError] = {}
    for creation_id, record in create.items():
        try:
            done[creation_id] = await create_email(writer, record)
            writer.call.created_ids[creation_id] = done[creation_id]["id"]
        except SetFailure as failure:
            failed[creation_id] = failure.error
    return done, failed


async def handle_email_set(call: Call[CallContext]) -> list[Response]:
    args = parse_set_args(call.arguments, call.limits)
    account = call.context.require_account(args.account_id)
    store = call.context.jmap.runtime.store
    old_state = await check_state(store, account.id, args.if_in_state)
    writer = _Writer(call, await mailboxes_by_id(store, account.id))
    created, not_created = await _creates(writer, args.create)
    updated, not_updated = await _updates(writer, args.update)
    destroyed, not_destroyed = await _destroys(writer, args.destroy)
    return [("Email/set", {
        "accountId": args.account_id, "oldState": old_state,
        "newState": await store.jmap_state(account.id),
        "created": created or None, "updated": updated or None, "destroyed": destroyed or None,
        "notCreated": render_set_errors(not_created),
        "notUpdated": render_set_errors(not_updated),
        "notDestroyed": render_set_errors(not_destroyed),
    })]


# -- Email/copy (§4.7) --------------------------------------------------------------------------


async def handle_email_copy(call: Call[CallContext]) -> list[Response]:
    """§4.7 copies between two different accounts; a user reaches one account only."""
    args = parse_copy_args(call.arguments, call.limits)
    if args.from_account_id != call.context.account_id:
        raise MethodError(MethodErrorType.FROM_ACCOUNT_NOT_FOUND)
    # accountId differs from fromAccountId (parse_copy_args), so it is not this user's
    raise MethodError(MethodErrorType.ACCOUNT_NOT_FOUND)


def register(registry: MethodRegistry[CallContext]) -> None:
    registry.register("Email/set", MAIL, handle_email_set)
    registry.register("Email/import", MAIL, handle_email_import)
    registry.register("Email/copy", MAIL, handle_email_copy)
