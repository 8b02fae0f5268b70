"""PostgreSQL-specific store behaviour: migrations under concurrency, UID allocation across
"nodes" (separate stores, pools and listeners on one database), the LISTEN/NOTIFY feed,
and the blob table. The shared semantics are in tests/store/test_contract.py."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from postroom.errors import TryLater
from postroom.store.api import Change, FlagMode, NewMessage
from postroom.store.changes import ChangeFeed
from postroom.store.migrate import load_migrations
from postroom.store.pgblobs import PgBlobStore
from postroom.store.pgfeed import parse_payload, render_payload
from postroom.store.postgres import PostgresStore, open_postgres
from tests.postgres.pgserver import new_database

WHEN = dt.datetime(2026, 4, 5, 6, 7, 8, tzinfo=dt.UTC)


class Node:
    """One node's view: its own pool, listener, feed and blob cache."""

    def __init__(self, store: PostgresStore, blobs: PgBlobStore, feed: ChangeFeed) -> None:
        self.store, self.blobs, self.feed = store, blobs, feed

    async def deliver(self, mailbox_id: int, body: bytes = b"Subject: x\r\n\r\nx\r\n") -> int:
        blob_id = await self.blobs.put(body)
        row = await self.store.append_message(mailbox_id, NewMessage(blob_id, len(body), WHEN))
        return row.uid


@pytest.fixture
def empty_database() -> Iterator[str]:
    with new_database(migrated=False) as url:
        yield url


@pytest.fixture
async def two_nodes(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[Node, Node]]:
    opened = []
    for name in ("a", "b"):
        feed = ChangeFeed()
        store, blobs = await open_postgres(database_url, feed, tmp_path / name / "cache")
        opened.append(Node(store, blobs, feed))
    try:
        yield opened[0], opened[1]
    finally:
        for node in opened:
            await node.store.close()


async def test_fresh_database_migrated_once_by_nodes_starting_together(
    empty_database: str, tmp_path: Path
) -> None:
    results = await asyncio.gather(*(
        open_postgres(empty_database, ChangeFeed(), tmp_path / f"c{i}") for i in range(4)))
    try:
        async with results[0][0].connection() as conn:
            cursor = await conn.execute("SELECT version FROM schema_version ORDER BY version")
            versions = [row[0] for row in await cursor.fetchall()]
        assert versions == [m.version for m in load_migrations("postgres")]
    finally:
        for store, _ in results:
            await store.close()


def test_migration_numbers_match_sqlite() -> None:
    assert [m.version for m in load_migrations("postgres")] == [
        m.version for m in load_migrations("sqlite")]


async def test_concurrent_appends_from_two_nodes_never_collide(
    two_nodes: tuple[Node, Node]
) -> None:
    a, b = two_nodes
    account = await a.store.create_account("alice@example.org", "h")
    inbox = await a.store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    uids = await asyncio.gather(*(node.deliver(inbox.id) for node in [a, b] * 100))
    assert sorted(uids) == list(range(1, 201))
    rows = await b.store.list_messages(inbox.id)
    assert [r.uid for r in rows] == list(range(1, 201))
    assert all(x.modseq < y.modseq for x, y in itertools.pairwise(rows))
    after = await b.store.get_mailbox_by_id(inbox.id)
    assert after is not None and (after.uidnext, after.highest_modseq) == (201, rows[-1].modseq)


async def test_flags_and_expunge_racing_appends_keep_modseq_order(
    two_nodes: tuple[Node, Node]
) -> None:
    a, b = two_nodes
    account = await a.store.create_account("bob@example.org", "h")
    inbox = (await a.store.get_mailbox(account.id, "INBOX")).id  # type: ignore[union-attr]
    first = [await a.deliver(inbox) for _ in range(20)]
    await asyncio.gather(
        *(b.deliver(inbox) for _ in range(20)),
        *(a.store.store_flags(inbox, [uid], frozenset({"\\Seen"}), FlagMode.ADD)
          for uid in first[:10]),
        b.store.expunge(inbox, first[10:]),
    )
    rows = await a.store.list_messages(inbox)
    assert len(rows) == 30 and len({r.modseq for r in rows}) == 30
    box = await a.store.get_mailbox_by_id(inbox)
    assert box is not None and box.highest_modseq >= max(r.modseq for r in rows)
    assert await a.store.expunged_since(inbox, 0) == first[10:]


async def wait_for_change(feed_queue: asyncio.Queue[Change]) -> Change:
    return await asyncio.wait_for(feed_queue.get(), timeout=1.0)  # "within a second"


async def test_changes_cross_nodes_once(two_nodes: tuple[Node, Node]) -> None:
    a, b = two_nodes
    account = await a.store.create_account("carol@example.org", "h")
    inbox = (await a.store.get_mailbox(account.id, "INBOX")).id  # type: ignore[union-attr]
    with a.feed.subscribe(account.id) as on_a, b.feed.subscribe(account.id) as on_b:
        uid = await a.deliver(inbox)
        appended = Change(account.id, inbox, frozenset({"append"}))
        assert await wait_for_change(on_b.queue) == appended  # via NOTIFY
        await b.store.store_flags(inbox, [uid], frozenset({"$X"}), FlagMode.ADD)
        flagged = Change(account.id, inbox, frozenset({"flags"}))
        # A fence: NOTIFYs arrive in commit order, so once b hears of the new mailbox,
        # any echo of b's own flag change would have arrived before it.
        fence = await a.store.create_mailbox(account.id, "Fence")
        fenced = Change(account.id, fence.id, frozenset({"mailbox"}))
        # b's own change carries its MODSEQ locally; NOTIFY (to a) never does.
        seen_on_b = [await wait_for_change(on_b.queue) for _ in range(2)]
        assert [replace(c, modseq=0) for c in seen_on_b] == [flagged, fenced]
        # On a, b's flag change (NOTIFY) may arrive before or after a's own fence (local).
        seen_on_a = [replace(await wait_for_change(on_a.queue), modseq=0) for _ in range(3)]
        assert seen_on_a[0] == appended and set(seen_on_a[1:]) == {flagged, fenced}
        assert on_a.drain() == [] and on_b.drain() == []  # each change seen once per node


def test_payload_round_trip_and_foreign_payloads() -> None:
    change = Change(7, 42, frozenset({"append", "expunge"}))
    assert parse_payload(render_payload("node1", change)) == ("node1", change)
    assert parse_payload("garbage") is None
    assert parse_payload("n x 1 append") is None


async def test_blobs_live_in_the_database_and_reach_other_nodes(
    two_nodes: tuple[Node, Node]
) -> None:
    a, b = two_nodes
    writer = a.blobs.writer()
    await writer.write(b"part one, ")
    await writer.write(b"part two")
    blob_id = await writer.commit()
    assert a.blobs.path(blob_id).read_bytes() == b"part one, part two"  # cached where written
    assert not b.blobs.path(blob_id).exists()
    assert await b.blobs.read(blob_id) == b"part one, part two"
    b.blobs.path(blob_id).unlink()
    assert (await b.blobs.local_path(blob_id)).read_bytes() == b"part one, part two"
    assert await a.blobs.exists(blob_id)
    await a.blobs.delete(blob_id)
    assert not await b.blobs.exists(blob_id)
    assert b.blobs.prune_cache(max_age=3600) == 0  # just used: kept
    assert b.blobs.prune_cache(max_age=-1) == 1
    with pytest.raises(FileNotFoundError):
        await b.blobs.local_path(blob_id)
    aborted = a.blobs.writer()
    await aborted.write(b"never")
    await aborted.abort()
    assert [blob async for blob in a.blobs.iter_ids()] == []


async def test_expunge_removes_the_blob_row(two_nodes: tuple[Node, Node],
                                            database_url: str) -> None:
    a, _ = two_nodes
    account = await a.store.create_account("dave@example.org", "h")
    inbox = (await a.store.get_mailbox(account.id, "INBOX")).id  # type: ignore[union-attr]
    uid = await a.deliver(inbox)
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM blobs").fetchone() == (1,)
    await a.store.expunge(inbox, [uid])
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM blobs").fetchone() == (0,)


async def test_lost_connections_are_a_temporary_failure_then_recover(
    two_nodes: tuple[Node, Node], database_url: str
) -> None:
    a, _ = two_nodes
    await a.store.create_account("erin@example.org", "h")
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                      " WHERE datname = current_database() AND pid <> pg_backend_pid()")
    failures = 0
    for _ in range(12):  # every pooled connection was cut: each fails once, then is replaced
        try:
            assert await a.store.get_account("erin@example.org") is not None
            break
        except TryLater:
            failures += 1
    else:
        pytest.fail("the store never recovered")
    assert failures >= 1
