"""`claim_due_queue_entries` on every backend: leases keep a claimed entry from being
claimed again until it is settled or the lease runs out (issue 10)."""

from __future__ import annotations

import asyncio
import datetime as dt

from postroom.store.api import QueueEntry, Store
from postroom.store.blobs import BlobStore

NOW = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)
LEASE = dt.timedelta(minutes=10)


async def queue_entries(store: Store, blobs: BlobStore, count: int) -> list[QueueEntry]:
    blob_id = await blobs.put(b"outbound")
    return await store.enqueue([
        QueueEntry(0, f"m{i}", "a@example.org", f"r{i}@remote.example", "remote.example",
                   blob_id, 8, NOW, NOW - dt.timedelta(minutes=count - i), 0, "")
        for i in range(count)])


async def test_claim_leases_until_settled_or_expired(store: Store, blobs: BlobStore) -> None:
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


async def test_concurrent_claims_are_disjoint(store: Store, blobs: BlobStore) -> None:
    stored = await queue_entries(store, blobs, 30)
    claims = await asyncio.gather(*(store.claim_due_queue_entries(NOW, 4, LEASE)
                                    for _ in range(10)))
    ids = [entry.id for claim in claims for entry in claim]
    assert sorted(ids) == sorted(entry.id for entry in stored)


async def test_flush_leaves_leased_entries_to_their_worker(store: Store,
                                                           blobs: BlobStore) -> None:
    stored = await queue_entries(store, blobs, 3)
    (claimed,) = await store.claim_due_queue_entries(NOW, 1, LEASE)
    await store.reschedule(stored[1].id, NOW + dt.timedelta(hours=2), "451 later")
    later = NOW + dt.timedelta(minutes=1)
    # The deferred entry and the never-tried one become due; the leased one stays leased.
    assert await store.flush_queue(later) == 2
    assert [e.id for e in await store.claim_due_queue_entries(later, 10, LEASE)] == [
        stored[1].id, stored[2].id]
    assert await store.flush_queue(later) == 0  # everything is leased now
    assert await store.claim_due_queue_entries(later, 10, LEASE) == []
    # A lease that ran out (its worker died) is no longer protected: flush makes it due.
    expired = NOW + LEASE
    assert await store.flush_queue(expired) == 1
    assert [e.id for e in await store.claim_due_queue_entries(expired, 10, LEASE)] == [
        claimed.id]


async def test_rescheduling_ends_the_lease(store: Store, blobs: BlobStore) -> None:
    (entry,) = await queue_entries(store, blobs, 1)
    await store.claim_due_queue_entries(NOW, 10, LEASE)
    await store.reschedule(entry.id, NOW + LEASE * 3, "451 later")  # beyond the lease
    assert await store.flush_queue(NOW) == 1  # deferred, not leased: flushable at once
    assert [e.id for e in await store.claim_due_queue_entries(NOW, 10, LEASE)] == [entry.id]


async def test_next_queue_attempt_is_the_soonest_retry_or_lease_end(
        store: Store, blobs: BlobStore) -> None:
    assert await store.next_queue_attempt() is None
    stored = await queue_entries(store, blobs, 2)
    assert await store.next_queue_attempt() == stored[0].next_attempt
    await store.claim_due_queue_entries(NOW, 10, LEASE)
    assert await store.next_queue_attempt() == NOW + LEASE
    await store.reschedule(stored[1].id, NOW + dt.timedelta(minutes=3), "451 later")
    assert await store.next_queue_attempt() == NOW + dt.timedelta(minutes=3)


async def test_queue_summary_counts_and_dates_the_oldest(store: Store,
                                                         blobs: BlobStore) -> None:
    assert await store.queue_summary() == (0, None)
    stored = await queue_entries(store, blobs, 3)
    assert await store.queue_summary() == (3, NOW)
    await store.finish_queue_entry(stored[0].id)
    assert await store.queue_summary() == (2, NOW)
