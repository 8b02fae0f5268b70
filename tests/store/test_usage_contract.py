"""Issue 25: the per-mailbox message count and size the database keeps by trigger
(migration 0008), and the keywords in use in a mailbox, on every backend.

Every way a message row comes or goes is checked against a recount from the rows
themselves: append, COPY, MOVE, expunge, INBOX rename, importer append, mailbox and
account deletion.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from postroom.store.api import FlagMode, MailboxUsage, NewMessage, Store
from postroom.store.blobs import BlobStore
from postroom.store.errors import NotFound
from tests.store.conftest import StoreMaker
from tests.store.test_contract import WHEN, deliver, mailbox_id, new_account


async def recount(store: Store, box: int) -> tuple[int, int]:
    rows = await store.list_messages(box)
    return len(rows), sum(row.size for row in rows)


async def usage_matches(store: Store, account: int, box: int) -> MailboxUsage:
    """The counters, checked against the rows of the mailbox and of the whole account."""
    usage = await store.mailbox_usage(box)
    assert (usage.mailbox_messages, usage.mailbox_size) == await recount(store, box)
    totals = [await recount(store, b.id) for b in await store.list_mailboxes(account)]
    assert usage.account_messages == sum(n for n, _ in totals)
    assert usage.account_size == sum(size for _, size in totals)
    return usage


async def test_new_mailbox_is_empty(store: Store) -> None:
    account = await new_account(store)
    assert await store.mailbox_usage(await mailbox_id(store, account)) == MailboxUsage(0, 0, 0, 0)
    with pytest.raises(NotFound):
        await store.mailbox_usage(999_999)


async def test_append_copy_move_expunge_keep_counters(store: Store, blobs: BlobStore) -> None:
    account = await new_account(store)
    inbox = await mailbox_id(store, account)
    archive = (await store.create_mailbox(account, "Archive")).id
    for size in (10, 200, 3000):
        await deliver(store, blobs, inbox, b"x" * size)
    usage = await usage_matches(store, account, inbox)
    assert usage == MailboxUsage(3, 3210, 3, 3210)

    await store.copy_messages(inbox, [1, 2, 3], archive)  # one statement of three rows
    assert await usage_matches(store, account, archive) == MailboxUsage(3, 3210, 6, 6420)

    await store.move_messages(inbox, [2, 3], archive)
    assert await usage_matches(store, account, inbox) == MailboxUsage(1, 10, 6, 6420)
    assert (await store.mailbox_usage(archive)).mailbox_messages == 5

    await store.expunge(archive, [1, 4])
    assert await usage_matches(store, account, archive) == MailboxUsage(3, 6200, 4, 6210)
    await store.expunge(archive, [1, 4])  # nothing left to remove: nothing changes
    assert (await store.mailbox_usage(archive)).mailbox_messages == 3


async def test_flag_changes_leave_counters(store: Store, blobs: BlobStore) -> None:
    account = await new_account(store)
    inbox = await mailbox_id(store, account)
    await deliver(store, blobs, inbox, b"y" * 50)
    await store.store_flags(inbox, [1], frozenset({"\\Seen", "$Work"}), FlagMode.ADD)
    assert await usage_matches(store, account, inbox) == MailboxUsage(1, 50, 1, 50)


async def test_rename_inbox_moves_counters(store: Store, blobs: BlobStore) -> None:
    account = await new_account(store)
    inbox = await mailbox_id(store, account)
    for size in (5, 7):
        await deliver(store, blobs, inbox, b"z" * size)
    await store.rename_mailbox(inbox, "Old")
    old = await mailbox_id(store, account, "Old")
    assert await usage_matches(store, account, inbox) == MailboxUsage(0, 0, 2, 12)
    assert await usage_matches(store, account, old) == MailboxUsage(2, 12, 2, 12)


async def test_import_counts(store: Store, blobs: BlobStore) -> None:
    account = await new_account(store)
    inbox = await mailbox_id(store, account)
    blob_id = await blobs.put(b"imported")
    await store.import_message(inbox, NewMessage(blob_id, 8, WHEN), source_key="k1", uid=40)
    assert await usage_matches(store, account, inbox) == MailboxUsage(1, 8, 1, 8)


async def test_delete_mailbox_and_account(store: Store, blobs: BlobStore) -> None:
    account = await new_account(store)
    other = await new_account(store, "bob@example.org")
    inbox = await mailbox_id(store, account)
    box = (await store.create_mailbox(account, "Lists")).id
    await deliver(store, blobs, inbox, b"a" * 11)
    await deliver(store, blobs, box, b"b" * 13)
    await deliver(store, blobs, await mailbox_id(store, other), b"c" * 17)
    await store.delete_mailbox(box)
    assert await usage_matches(store, account, inbox) == MailboxUsage(1, 11, 1, 11)
    await store.delete_account("alice@example.org")
    bob_inbox = await mailbox_id(store, other)
    assert await usage_matches(store, other, bob_inbox) == MailboxUsage(1, 17, 1, 17)


async def test_counters_survive_reopen(make_store: StoreMaker, blobs: BlobStore,
                                       store: Store) -> None:  # fmt: skip
    account = await new_account(store)
    inbox = await mailbox_id(store, account)
    await deliver(store, blobs, inbox, b"q" * 21)
    await store.close()
    reopened = make_store()
    await reopened.open()
    try:
        assert await reopened.mailbox_usage(inbox) == MailboxUsage(1, 21, 1, 21)
    finally:
        await reopened.close()


async def test_mailbox_keywords(store: Store, blobs: BlobStore) -> None:
    account = await new_account(store)
    inbox = await mailbox_id(store, account)
    assert await store.mailbox_keywords(inbox) == frozenset()
    await deliver(store, blobs, inbox, flags=frozenset({"\\Seen", "$Label1"}))
    await deliver(store, blobs, inbox, flags=frozenset({"$Label1", "Work"}))
    await deliver(store, blobs, inbox, flags=frozenset({"\\Flagged"}))
    assert await store.mailbox_keywords(inbox) == {"$Label1", "Work"}
    await store.expunge(inbox, [2])
    assert await store.mailbox_keywords(inbox) == {"$Label1"}


async def test_sqlite_migration_counts_existing_messages(
        backend: str, store: Store, blobs: BlobStore, make_store: StoreMaker,
        tmp_path: Path) -> None:  # fmt: skip
    """A database from before migration 0008 gets its counters from the rows there."""
    if backend != "sqlite":
        pytest.skip("the downgrade below is SQLite's")
    account = await new_account(store)
    inbox = await mailbox_id(store, account)
    for size in (3, 4):
        await deliver(store, blobs, inbox, b"m" * size)
    await store.close()
    db = sqlite3.connect(tmp_path / "db" / "postroom.sqlite3")
    for trigger in ("insert", "delete", "move"):
        db.execute(f"DROP TRIGGER messages_usage_{trigger}")
    db.execute("ALTER TABLE mailboxes DROP COLUMN message_count")
    db.execute("ALTER TABLE mailboxes DROP COLUMN total_size")
    db.execute("DELETE FROM schema_version WHERE version = 8")
    db.commit()
    db.close()
    await store.open()
    assert await usage_matches(store, account, inbox) == MailboxUsage(2, 7, 2, 7)
