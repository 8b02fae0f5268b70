"""Issue 21 on every backend: the `AccountStateStore` role (accounts disabled by an
administrator) and `flush_queue` for one message (the admin console's "retry")."""

from __future__ import annotations

import datetime as dt

from postroom.store.api import QueueEntry, Store
from postroom.store.blobs import BlobStore

NOW = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)


async def test_disable_enable_and_list(store: Store) -> None:
    alice = await store.create_account("alice@example.org", "x")
    bob = await store.create_account("bob@example.org", "x")
    assert not await store.is_account_disabled(alice.id)
    assert await store.set_account_disabled(bob.id, True)
    assert await store.set_account_disabled(alice.id, True)
    assert not await store.set_account_disabled(alice.id, True)  # already disabled
    assert await store.is_account_disabled(alice.id)
    assert await store.list_disabled_accounts() == ["alice@example.org", "bob@example.org"]
    assert await store.set_account_disabled(alice.id, False)
    assert not await store.set_account_disabled(alice.id, False)
    assert not await store.is_account_disabled(alice.id)
    assert await store.list_disabled_accounts() == ["bob@example.org"]


async def test_the_flag_goes_with_the_account(store: Store) -> None:
    carol = await store.create_account("carol@example.org", "x")
    await store.set_account_disabled(carol.id, True)
    await store.delete_account("carol@example.org")
    assert await store.list_disabled_accounts() == []
    again = await store.create_account("carol@example.org", "x")
    assert not await store.is_account_disabled(again.id)


async def test_flush_one_message_leaves_the_others(store: Store, blobs: BlobStore) -> None:
    blob_id = await blobs.put(b"outbound")
    later = NOW + dt.timedelta(hours=3)
    await store.enqueue([
        QueueEntry(0, message_id, "a@example.org", f"r{i}@remote.example", "remote.example",
                   blob_id, 8, NOW, later, 1, "451 later")
        for i, message_id in enumerate(("m1", "m1", "m2"))])
    assert await store.flush_queue(NOW, "m1") == 2
    due = await store.due_queue_entries(NOW, 10)
    assert sorted(e.message_id for e in due) == ["m1", "m1"]
    assert await store.flush_queue(NOW, "nothing-here") == 0
    assert await store.flush_queue(NOW) == 3
