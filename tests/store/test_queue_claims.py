"""`claim_due_queue_entries` on every backend: leases keep a claimed entry from being
claimed again until it is settled or the lease runs out (issue 10)."""

from __future__ import annotations

import asyncio
import datetime as dt

from postroom.store.api import QueueEntry, Store
from postroom.store.blobs import FileBlobStore

NOW = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)
LEASE = dt.timedelta(minutes=10)


async def queue_entries(store: Store, blobs: FileBlobStore, count: int) -> list[QueueEntry]:
    blob_id = await blobs.put(b"outbound")
    return await store.enqueue([
        QueueEntry(0, f"m{i}", "a@example.org", f"r{i}@remote.example", "remote.example",
                   blob_id, 8, NOW, NOW - dt.timedelta(minutes=count - i), 0, "")
        for i in range(count)])


async def test_claim_leases_until_settled_or_expired(store: Store, blobs: FileBlobStore) -> None:
    stored = await queue_entries(store, blobs, 3)
    claimed = await store.claim_due_queue_entries(NOW, 2, LEASE)
    assert claimed == stored[:2]  # oldest first, with the next_attempt they had
    rest = await store.claim_due_queue_entries(NOW, 10, LEASE)
    assert rest == stored[2:]
    assert await store.claim_due_queue_entries(NOW + LEASE - dt.timedelta(seconds=1), 10,
                                               LEASE) == []
    assert await store.due_queue_entries(NOW, 10) == []
    await store.reschedule(claimed[0].id, NOW, "451 later")  # settled: due again at once
    await store.finish_queue_entry(claimed[1].id)
    assert [e.id for e in await store.claim_due_queue_entries(NOW, 10, LEASE)] == [
        claimed[0].id]
    expired = await store.claim_due_queue_entries(NOW + LEASE, 10, LEASE)
    assert [e.id for e in expired] == [claimed[0].id, stored[2].id]


async def test_concurrent_claims_are_disjoint(store: Store, blobs: FileBlobStore) -> None:
    stored = await queue_entries(store, blobs, 30)
    claims = await asyncio.gather(*(store.claim_due_queue_entries(NOW, 4, LEASE)
                                    for _ in range(10)))
    ids = [entry.id for claim in claims for entry in claim]
    assert sorted(ids) == sorted(entry.id for entry in stored)
