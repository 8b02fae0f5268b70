"""Email/set, Email/import and Email/copy (RFC 8621 §4.6-4.8; jmap/emailset.py) over a
real store (SQLite, or PostgreSQL under POSTROOM_TEST_STORAGE=postgresql)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from postroom.store.api import FlagMode
from postroom.store.jmapuploads_api import JmapUpload
from tests.jmap.test_emails import Api, mail_config, message, open_api


@pytest.fixture
async def api(tmp_path: Path, server_cert: tuple[Path, Path]) -> AsyncIterator[Api]:
    async for opened in open_api(mail_config(tmp_path, server_cert)):
        yield opened


async def _set(api: Api, **arguments: Any) -> dict[str, Any]:
    return await api.ok("Email/set", **arguments)


async def _flags(api: Api, mailbox: str) -> list[frozenset[str]]:
    box = await api.mailbox(mailbox)
    return [row.flags for row in await api.store.list_messages(box.id)]


async def _upload(api: Api, raw: bytes) -> str:
    blob_id = await api.runtime.blobs.put(raw)
    await api.store.add_jmap_upload(JmapUpload(api.account.id, blob_id, "message/rfc822",
                                               len(raw), dt.datetime.now(dt.UTC)))
    return blob_id


# -- keywords -------------------------------------------------------------------------------


async def test_keywords_whole_and_patched(api: Api) -> None:
    email = await api.deliver(message(), flags=frozenset({"\\Seen", "\\Deleted", "Old"}))
    state = await api.store.jmap_state(api.account.id)
    response = await _set(api, update={email: {"keywords": {"$flagged": True, "$Work": True}}})
    assert response["updated"] == {email: None} and response["oldState"] == state
    assert response["newState"] != state and response["notUpdated"] is None
    assert await _flags(api, "INBOX") == [frozenset({"\\Flagged", "$work", "\\Deleted"})]
    await _set(api, update={email: {"keywords/$seen": True, "keywords/$FLAGGED": None}})
    assert (await api.get_one(email, properties=["keywords"]))["keywords"] == {
        "$seen": True, "$work": True}
    assert await _flags(api, "INBOX") == [frozenset({"\\Seen", "$work", "\\Deleted"})]


async def test_keywords_apply_to_every_copy(api: Api) -> None:
    email = await api.deliver(message())
    inbox, trash = await api.mailbox("INBOX"), await api.mailbox("Trash")
    await api.store.copy_messages(inbox.id, [1], trash.id)
    await api.store.store_flags(trash.id, [1], frozenset({"$Junkish"}), FlagMode.ADD)
    await _set(api, update={email: {"keywords": {"$seen": True}}})
    assert await _flags(api, "INBOX") == [frozenset({"\\Seen"})]
    assert await _flags(api, "Trash") == [frozenset({"\\Seen"})]


async def test_bad_updates_are_refused_one_by_one(api: Api) -> None:
    email = await api.deliver(message())
    other = await api.deliver(message("other"))
    response = await _set(api, update={
        email: {"subject": "new"},
        other: {"keywords": {"bad keyword": True}},
        "nope": {"keywords": {}},
        "#unknown": {"keywords": {}},
    })
    errors = response["notUpdated"]
    assert errors[email] == {"type": "invalidProperties", "properties": ["subject"],
                             "description": "only keywords and mailboxIds change"}
    assert errors[other]["type"] == "invalidProperties"
    assert errors["nope"]["type"] == "notFound" and errors["#unknown"]["type"] == "notFound"
    assert response["updated"] is None
    response = await _set(api, update={email: {"keywords/$seen": False}})
    assert response["notUpdated"][email]["type"] == "invalidProperties"
    response = await _set(api, update={email: {"keywords/a": True, "keywords": {}}})
    assert response["notUpdated"][email]["type"] == "invalidPatch"


async def test_keyword_limits(tmp_path: Path, server_cert: tuple[Path, Path]) -> None:
    config = mail_config(tmp_path, server_cert, MAX_KEYWORDS_PER_MAILBOX=2,
                         MAX_KEYWORD_LENGTH=16)  # fmt: skip
    async for small in open_api(config):
        email = await small.deliver(message())
        response = await small.ok("Email/set", update={email: {"keywords": {
            "a": True, "b": True, "c": True}}})
        assert response["notUpdated"][email]["type"] == "tooManyKeywords"
        response = await small.ok("Email/set", update={email: {"keywords": {"x" * 17: True}}})
        assert response["notUpdated"][email]["type"] == "invalidProperties"
        response = await small.ok("Email/set", update={email: {"keywords": {
            "a": True, "b": True, "$seen": True}}})
        assert response["updated"] == {email: None}
        other = await small.deliver(message("other"), mailbox="Trash",
                                    flags=frozenset({"c", "d"}))  # fmt: skip
        inbox = await small.mailbox_id("INBOX")
        response = await small.ok("Email/set", update={other: {f"mailboxIds/{inbox}": True}})
        assert response["notUpdated"][other]["type"] == "tooManyKeywords"  # INBOX has a, b


# -- mailboxes ------------------------------------------------------------------------------


async def test_moving_keeps_the_email_id(api: Api) -> None:
    email = await api.deliver(message(), flags=frozenset({"\\Seen"}))
    inbox, archive = await api.mailbox_id("INBOX"), await api.mailbox_id("Trash")
    response = await _set(api, update={email: {"mailboxIds": {archive: True}}})
    assert response["updated"] == {email: None}
    found = await api.get_one(email, properties=["mailboxIds", "keywords"])
    assert found["mailboxIds"] == {archive: True} and found["keywords"] == {"$seen": True}
    assert await _flags(api, "INBOX") == []
    await _set(api, update={email: {f"mailboxIds/{inbox}": True}})  # a copy
    found = await api.get_one(email, properties=["mailboxIds"])
    assert found["mailboxIds"] == {inbox: True, archive: True}
    await _set(api, update={email: {f"mailboxIds/{archive}": None}})  # an expunge
    assert (await api.get_one(email, properties=["mailboxIds"]))["mailboxIds"] == {inbox: True}
    trash_box = await api.mailbox("Trash")
    assert trash_box.highest_modseq > 0 and await _flags(api, "Trash") == []


async def test_every_row_leaves_a_mailbox(api: Api) -> None:
    email = await api.deliver(message())
    inbox = await api.mailbox("INBOX")
    await api.store.copy_messages(inbox.id, [1], inbox.id)  # twice in INBOX
    await _set(api, update={email: {"mailboxIds": {await api.mailbox_id("Junk"): True}}})
    assert await _flags(api, "INBOX") == [] and len(await _flags(api, "Junk")) == 1


async def test_mailbox_and_keyword_changes_together(api: Api) -> None:
    email = await api.deliver(message())
    drafts, sent = await api.mailbox_id("Drafts"), await api.mailbox_id("Sent")
    await _set(api, update={email: {"mailboxIds": {drafts: True, sent: True},
                                    "keywords": {"$seen": True}}})
    assert await _flags(api, "Drafts") == [frozenset({"\\Seen"})]
    assert await _flags(api, "Sent") == [frozenset({"\\Seen"})]
    assert await _flags(api, "INBOX") == []


async def test_mailbox_ids_must_name_mailboxes(api: Api) -> None:
    email = await api.deliver(message())
    inbox = await api.mailbox_id("INBOX")
    response = await _set(api, update={
        email: {"mailboxIds": {}}})
    assert response["notUpdated"][email]["properties"] == ["mailboxIds"]
    for patch in ({"mailboxIds": {"Mnone": True}}, {f"mailboxIds/{inbox}": None},
                  {"mailboxIds": {inbox: False}}, {"mailboxIds": [inbox]}):
        response = await _set(api, update={email: patch})
        assert response["notUpdated"][email]["type"] == "invalidProperties", patch
    assert (await api.get_one(email, properties=["mailboxIds"]))["mailboxIds"] == {inbox: True}


async def test_copies_are_refused_without_room(tmp_path: Path,
                                               server_cert: tuple[Path, Path]) -> None:
    raw = message(body="x" * 2000)
    config = mail_config(tmp_path, server_cert, POSTFIX_MAILBOX_SIZE_LIMIT=len(raw) * 3 // 2)
    async for small in open_api(config):
        email = await small.deliver(raw)
        trash = await small.mailbox_id("Trash")
        inbox = await small.mailbox_id("INBOX")
        response = await small.ok("Email/set", update={email: {f"mailboxIds/{trash}": True}})
        assert response["notUpdated"][email]["type"] == "overQuota"
        response = await small.ok("Email/set", update={email: {"mailboxIds": {trash: True}}})
        assert response["updated"] == {email: None}  # a move adds nothing
        found = await small.get_one(email, properties=["mailboxIds"])
        assert found["mailboxIds"] == {trash: True} and inbox not in found["mailboxIds"]


# -- destroy, ifInState, create -------------------------------------------------------------


async def test_destroy_and_states(api: Api) -> None:
    email = await api.deliver(message())
    inbox, trash = await api.mailbox("INBOX"), await api.mailbox("Trash")
    await api.store.copy_messages(inbox.id, [1], trash.id)
    stale = await api.store.jmap_state(api.account.id)
    await api.deliver(message("later"))
    assert await api.error("Email/set", ifInState=stale, destroy=[email]) == "stateMismatch"
    state = await api.store.jmap_state(api.account.id)
    response = await _set(api, ifInState=state, destroy=[email, "nope"])
    assert response["destroyed"] == [email]
    assert response["notDestroyed"] == {"nope": {"type": "notFound"}}
    assert await _flags(api, "Trash") == [] and len(await _flags(api, "INBOX")) == 1
    changes = await api.ok("Email/changes", sinceState=state)
    assert changes["destroyed"] == [email]
    assert await api.error("Email/set", accountId="a9") == "accountNotFound"
    assert await api.error("Email/set", destroy="x") == "invalidArguments"


# -- Email/import -----------------------------------------------------------------------------


async def test_import_stores_an_upload_in_each_mailbox(api: Api) -> None:
    parent = await api.deliver(message("first", message_id="p@x"))
    raw = message("Re: first", message_id="r@x", reply_to="p@x")
    blob = await _upload(api, raw)
    inbox, drafts = await api.mailbox_id("INBOX"), await api.mailbox_id("Drafts")
    state = await api.store.jmap_state(api.account.id)
    answer = await api.request([["Email/import", {"accountId": api.account_id, "emails": {
        "k1": {"blobId": blob, "mailboxIds": {inbox: True, drafts: True},
               "keywords": {"$Draft": True}, "receivedAt": "2026-04-01T10:00:00Z"}}},
        "i"]], created_ids={})
    (imported,) = answer["methodResponses"]
    created = imported[1]["created"]["k1"]
    assert imported[1]["oldState"] == state and imported[1]["notCreated"] is None
    assert created == {"id": blob, "blobId": blob, "threadId": "T" + parent,
                       "size": len(raw)}
    assert answer["createdIds"] == {"k1": blob}
    assert (await api.get_one(blob, properties=["subject"]))["subject"] == "Re: first"
    found = await api.get_one(blob, properties=["mailboxIds", "keywords", "receivedAt"])
    assert found == {"id": blob, "mailboxIds": {inbox: True, drafts: True},
                     "keywords": {"$draft": True}, "receivedAt": "2026-04-01T10:00:00Z"}
    response = await api.ok("Email/import", emails={
        "k2": {"blobId": blob, "mailboxIds": {inbox: True}}})
    assert response["notCreated"]["k2"] == {"type": "alreadyExists", "existingId": blob,
                                            "description": "that message is an Email here"}


async def test_import_reencodes_binary_and_imports_parts(api: Api) -> None:
    raw = (b"From: a@example.com\r\nSubject: bin\r\nMIME-Version: 1.0\r\n"
           b"Content-Transfer-Encoding: binary\r\nContent-Type: application/x-raw\r\n\r\n"
           + bytes(range(1, 256)) + b"\r\n")
    blob = await _upload(api, raw)
    inbox = await api.mailbox_id("INBOX")
    response = await api.ok("Email/import", emails={"a": {"blobId": blob,
                                                          "mailboxIds": {inbox: True}}})
    created = response["created"]["a"]
    assert created["id"] != blob  # re-encoded: a blob of its own
    stored = await api.runtime.blobs.read(created["id"])
    assert b"Content-Transfer-Encoding: base64" in stored
    inner = b"From: b@example.com\r\nSubject: inner\r\n\r\nhi\r\n"
    outer = await api.deliver(
        b"From: a@example.com\r\nSubject: fwd\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain"
        b"\r\n\r\nsee\r\n--b\r\nContent-Type: message/rfc822\r\n\r\n" + inner + b"\r\n--b--\r\n")
    response = await api.ok("Email/import", emails={"p": {"blobId": outer + "_2",
                                                          "mailboxIds": {inbox: True}}})
    part = response["created"]["p"]["id"]
    assert (await api.get_one(part, properties=["subject"]))["subject"] == "inner"


async def test_import_errors(tmp_path: Path, server_cert: tuple[Path, Path]) -> None:
    config = mail_config(tmp_path, server_cert, POSTFIX_MESSAGE_SIZE_LIMIT=1000)
    async for small in open_api(config):
        inbox = await small.mailbox_id("INBOX")
        big = await _upload(small, message(body="x" * 2000))
        fine = await _upload(small, message())
        empty = await _upload(small, b"")
        stranger = await small.runtime.blobs.put(message("not uploaded"))
        response = await small.ok("Email/import", emails={
            "big": {"blobId": big, "mailboxIds": {inbox: True}},
            "gone": {"blobId": "0123abcd", "mailboxIds": {inbox: True}},
            "stranger": {"blobId": stranger, "mailboxIds": {inbox: True}},
            "part": {"blobId": fine + "_9", "mailboxIds": {inbox: True}},
            "empty": {"blobId": empty, "mailboxIds": {inbox: True}},
            "nobox": {"blobId": fine, "mailboxIds": {}},
            "badbox": {"blobId": fine, "mailboxIds": {"Mnope": True}},
            "badkw": {"blobId": fine, "mailboxIds": {inbox: True}, "keywords": ["$seen"]},
            "baddate": {"blobId": fine, "mailboxIds": {inbox: True}, "receivedAt": "now"},
            "extra": {"blobId": fine, "mailboxIds": {inbox: True}, "size": 3},
            "noblob": {"mailboxIds": {inbox: True}},
        })
        errors = response["notCreated"]
        assert response["created"] is None
        assert errors["big"]["type"] == "tooLarge" and errors["big"]["maxSize"] == 1000
        for name in ("gone", "stranger", "part"):
            assert errors[name]["type"] == "blobNotFound", name
        assert errors["gone"]["notFound"] == ["0123abcd"]
        assert {name: errors[name]["properties"] for name in (
            "empty", "nobox", "badbox", "badkw", "baddate", "extra", "noblob")} == {
            "empty": ["blobId"], "nobox": ["mailboxIds"], "badbox": ["mailboxIds"],
            "badkw": ["keywords"], "baddate": ["receivedAt"], "extra": ["size"],
            "noblob": ["blobId"]}
        assert await small.error("Email/import", emails={"k": "x"}) == "invalidArguments"
        assert await small.error("Email/import") == "invalidArguments"
        assert await small.error("Email/import", emails={}, ifInState="s0") == "stateMismatch"
        assert await small.error("Email/import", accountId="a9", emails={}) == \
            "accountNotFound"


async def test_import_is_refused_without_room(tmp_path: Path,
                                              server_cert: tuple[Path, Path]) -> None:
    raw = message(body="x" * 2000)
    config = mail_config(tmp_path, server_cert, POSTFIX_MAILBOX_SIZE_LIMIT=len(raw) // 2)
    async for small in open_api(config):
        blob = await _upload(small, raw)
        response = await small.ok("Email/import", emails={"k": {
            "blobId": blob, "mailboxIds": {await small.mailbox_id("INBOX"): True}}})
        assert response["notCreated"]["k"]["type"] == "overQuota"


# -- Email/copy -------------------------------------------------------------------------------


async def test_copy_has_no_other_account(api: Api) -> None:
    email = await api.deliver(message())
    create = {"c": {"id": email, "mailboxIds": {await api.mailbox_id("INBOX"): True}}}
    assert await api.error("Email/copy", fromAccountId="a9", create=create) == \
        "fromAccountNotFound"
    assert await api.error("Email/copy", fromAccountId=api.account_id, accountId="a9",
                           create=create) == "accountNotFound"
    assert await api.error("Email/copy", fromAccountId=api.account_id,
                           create=create) == "invalidArguments"  # the same account
