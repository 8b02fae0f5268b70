"""Contract tests of the JMAP HTTP face's store roles (issue 23), on every backend:
API tokens (ApiTokenStore) and uploads (JmapUploadStore) — an upload row keeps its blob
alive like a message row does, and the sweep releases it only when nothing else uses it."""

from __future__ import annotations

import datetime as dt

from postroom.store.api import NewMessage, Store
from postroom.store.blobs import BlobStore
from postroom.store.jmapuploads_api import JmapUpload

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(hours=24)
MESSAGE = (b"From: a@example.com\r\nSubject: parts\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
           b"Content-Type: text/plain\r\n\r\nbody\r\n--b--\r\n")


async def _account(store: Store, address: str = "self@example.com") -> int:
    return (await store.create_account(address, "x")).id


async def _exists(blobs: BlobStore, blob_id: str) -> bool:
    try:
        await blobs.read(blob_id)
    except FileNotFoundError:
        return False
    return True


async def test_api_tokens_are_found_by_hash_named_per_account_and_revocable(
        store: Store) -> None:
    account, other = await _account(store), await _account(store, "other@example.com")
    token = await store.add_api_token(account, "backup", "aa" * 32, NOW)
    assert token is not None and token.name == "backup" and token.last_used is None
    assert await store.add_api_token(account, "backup", "bb" * 32, NOW) is None
    assert await store.add_api_token(other, "backup", "cc" * 32, NOW) is not None
    assert await store.api_token_by_hash("aa" * 32) == token
    assert await store.api_token_by_hash("dd" * 32) is None
    await store.touch_api_token(token.id, NOW + DAY)
    (listed,) = await store.list_api_tokens(account)
    assert listed.last_used == NOW + DAY
    assert not await store.delete_api_token(other, token.id)  # not theirs
    assert await store.delete_api_token(account, token.id)
    assert await store.api_token_by_hash("aa" * 32) is None
    await store.delete_account("other@example.com")
    assert await store.api_token_by_hash("cc" * 32) is None  # gone with the account


async def test_an_upload_is_its_uploaders_and_keeps_its_blob(store: Store,
                                                            blobs: BlobStore) -> None:
    account, other = await _account(store), await _account(store, "other@example.com")
    blob_id = await blobs.put(b"uploaded bytes")
    await store.add_jmap_upload(JmapUpload(account, blob_id, "text/plain", 14, NOW))
    found = await store.jmap_upload(account, blob_id)
    assert found == JmapUpload(account, blob_id, "text/plain", 14, NOW)
    assert await store.jmap_upload(other, blob_id) is None
    assert await store.account_holds_blob(account, blob_id)
    assert not await store.account_holds_blob(other, blob_id)
    assert await store.jmap_upload_bytes(account, NOW - DAY) == 14
    assert await store.jmap_upload_bytes(account, NOW + DAY) == 0
    await store.release_blob_if_unused(blob_id)  # an upload row is a reference
    assert await _exists(blobs, blob_id)
    assert await store.expire_jmap_uploads(NOW, 100) == 0  # not older than the cut-off
    assert await store.expire_jmap_uploads(NOW + DAY, 100) == 1
    assert not await store.account_holds_blob(account, blob_id)
    assert not await _exists(blobs, blob_id)  # nothing else used it: released


async def test_the_sweep_keeps_a_blob_a_message_uses(store: Store, blobs: BlobStore) -> None:
    account = await _account(store)
    inbox = await store.get_mailbox(account, "INBOX")
    assert inbox is not None
    blob_id = blobs.new_id(len(MESSAGE))
    await store.append_message(inbox.id, NewMessage(blob_id, len(MESSAGE), NOW,
                                                    meta='{"m": 1}'), body=MESSAGE)
    await store.add_jmap_upload(JmapUpload(account, blob_id, "message/rfc822",
                                           len(MESSAGE), NOW))
    assert await store.message_meta_for_blob(account, blob_id) == '{"m": 1}'
    assert await store.message_meta_for_blob(await _account(store, "o@example.com"),
                                             blob_id) is None
    assert await store.expire_jmap_uploads(NOW + DAY, 100) == 1
    assert await _exists(blobs, blob_id)  # the message still names it
    assert await store.account_holds_blob(account, blob_id)


async def test_a_deleted_accounts_uploads_stay_referenced_until_swept(
        store: Store, blobs: BlobStore) -> None:
    account = await _account(store)
    blob_id = await blobs.put(b"x" * 100_000)  # a file on every backend
    await store.add_jmap_upload(JmapUpload(account, blob_id, "application/zip", 100_000, NOW))
    await store.delete_account("self@example.com")
    assert await _exists(blobs, blob_id)  # no leak: the row stays (account_id NULL)
    reused = await _account(store)  # an id SQLite may hand out again sees nothing
    assert not await store.account_holds_blob(reused, blob_id)
    assert await store.expire_jmap_uploads(NOW + DAY, 100) == 1
    assert not await _exists(blobs, blob_id)
