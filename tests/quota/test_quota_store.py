"""The `QuotaStore` role (issue 17) on the backend under test (SQLite, or PostgreSQL with
POSTROOM_TEST_STORAGE=postgresql): settings, and usage that stays exact across appends,
COPY, MOVE, expunges, imports and mailbox deletion, each read in one query."""

from __future__ import annotations

import datetime as dt

import pytest

from postroom.runtime import Runtime
from postroom.store.api import NewMessage
from postroom.store.errors import NotFound
from postroom.store.quota_api import QuotaSetting
from tests.quota.conftest import fill

ADDRESS = "quota@example.test"


async def usage_by_scan(runtime: Runtime, account_id: int) -> tuple[int, int]:
    """(messages, bytes) counted message by message: what the counters must equal."""
    messages = size = 0
    for box in await runtime.store.list_mailboxes(account_id):
        rows = await runtime.store.list_messages(box.id)
        messages += len(rows)
        size += sum(row.size for row in rows)
    return messages, size


async def test_usage_exact_across_every_write(runtime: Runtime) -> None:
    store = runtime.store
    account = await store.create_account(ADDRESS, "{ARGON2ID}x")
    inbox = await store.get_mailbox(account.id, "INBOX")
    trash = await store.get_mailbox(account.id, "Trash")
    assert inbox is not None and trash is not None
    for size in (1000, 2000, 3000):
        await fill(runtime, ADDRESS, size)
    uids = [row.uid for row in await store.list_messages(inbox.id)]
    await store.copy_messages(inbox.id, uids[:2], trash.id)
    await store.move_messages(inbox.id, uids[2:], trash.id)
    trash_uids = [row.uid for row in await store.list_messages(trash.id)]
    await store.expunge(trash.id, trash_uids[:1])
    data = b"Subject: imported\r\n\r\nbody\r\n"
    blob_id = await runtime.blobs.put(data)
    await store.import_message(inbox.id, NewMessage(blob_id, len(data), dt.datetime.now(dt.UTC)),
                               source_key="key-1", uid=None)
    usage = await store.quota_usage(trash.id)
    assert (usage.messages, usage.size) == await usage_by_scan(runtime, account.id)
    assert (usage.messages, usage.size) == (5, 1000 + 2000 + 2000 + 3000 + len(data))
    assert (usage.mailbox_messages, usage.mailbox_size) == (2, 2000 + 3000)
    whole = await store.account_quota(account.id)
    assert (whole.messages, whole.size, whole.mailbox_messages) == (5, usage.size, 0)
    await store.delete_mailbox(trash.id)
    after = await store.account_quota(account.id)
    assert (after.messages, after.size) == await usage_by_scan(runtime, account.id)


async def test_settings_and_listing(runtime: Runtime) -> None:
    store = runtime.store
    account = await store.create_account(ADDRESS, "{ARGON2ID}x")
    await store.create_account("empty@example.test", "{ARGON2ID}x")
    await fill(runtime, ADDRESS, 500)
    assert (await store.account_quota(account.id)).setting == QuotaSetting(None, None, 0)
    await store.set_quota(ADDRESS.upper(), 2 * 1024**3, 1000)
    assert (await store.account_quota(account.id)).setting == QuotaSetting(2 * 1024**3, 1000)
    listed = await store.list_quotas()
    assert [(u.address, u.messages, u.size) for u in listed] == [
        ("empty@example.test", 0, 0), (ADDRESS, 1, 500)]
    assert listed[1].setting.storage == 2 * 1024**3
    await store.set_quota(ADDRESS, None, None)
    assert (await store.account_quota(account.id)).setting == QuotaSetting()
    with pytest.raises(NotFound):
        await store.set_quota("nobody@example.test", 1, None)
    with pytest.raises(NotFound):
        await store.account_quota(account.id + 1000)


async def test_warning_level_is_compare_and_set(runtime: Runtime) -> None:
    store = runtime.store
    account = await store.create_account(ADDRESS, "{ARGON2ID}x")
    assert await store.set_quota_warned(account.id, 80, was=0)
    assert not await store.set_quota_warned(account.id, 80, was=0)  # a racer lost
    assert await store.set_quota_warned(account.id, 95, was=80)
    assert (await store.account_quota(account.id)).setting.warned == 95
    await store.set_quota(ADDRESS, 1024, None)  # a new quota: warnings start again
    assert (await store.account_quota(account.id)).setting.warned == 0
