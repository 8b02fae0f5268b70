"""SQLite group commit (store/sqlitebatch.py): concurrent appends, flag changes and expunges
share transactions, each caller answered only after its COMMIT, one failure isolated."""

from __future__ import annotations

import asyncio
import datetime as dt
import fcntl
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from postroom.store.api import Expunged, FlagMode, Mailbox, NewMessage
from postroom.store.blobs import FileBlobStore
from postroom.store.changes import ChangeFeed
from postroom.store.errors import NotFound
from postroom.store.sqlite import SqliteStore
from postroom.store.sqlitebatch import LOOP_MAX_MESSAGES, BatchWork, BatchWriter

WHEN = dt.datetime(2026, 2, 3, 4, 5, 6, tzinfo=dt.UTC)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "postroom.sqlite3"


@pytest.fixture
async def store(db_path: Path, files: FileBlobStore, feed: ChangeFeed
                ) -> AsyncIterator[SqliteStore]:  # fmt: skip
    opened = SqliteStore(db_path, files, feed)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def batch_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of jobs in every batch committed."""
    sizes: list[int] = []
    real = BatchWriter._commit_batch

    def counting(self: BatchWriter, batch: list[Any]) -> Any:
        sizes.append(len(batch))
        return real(self, batch)

    monkeypatch.setattr(BatchWriter, "_commit_batch", counting)
    return sizes


async def inbox_of(store: SqliteStore, address: str) -> Mailbox:
    account = await store.create_account(address, "h")
    inbox = await store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    return inbox


def on_disk(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """What another process would read right now."""
    with sqlite3.connect(path) as db:
        return db.execute(sql, params).fetchall()


async def test_concurrent_writes_share_batches_and_are_durable_when_answered(
        store: SqliteStore, files: FileBlobStore, db_path: Path,
        batch_sizes: list[int]) -> None:
    boxes = [await inbox_of(store, f"u{n}@example.org") for n in range(10)]
    blob_id = await files.put(b"Subject: x\r\n\r\nbody\r\n")
    message = NewMessage(blob_id, 21, WHEN, frozenset())
    rows = await asyncio.gather(*(store.append_message(box.id, message) for box in boxes))
    assert [row.uid for row in rows] == [1] * 10
    assert max(batch_sizes) > 1  # the appends did not each get their own transaction

    async def flag_then_check(box: Mailbox) -> None:
        changed = await store.store_flags(box.id, [1], frozenset({"\\Seen"}), FlagMode.ADD)
        assert [row.flags for row in changed] == [frozenset({"\\Seen"})]
        # Answered means committed: another connection sees it now.
        assert on_disk(db_path, "SELECT flags FROM messages WHERE mailbox_id = ?",
                       (box.id,)) == [("\\Seen",)]  # fmt: skip

    batch_sizes.clear()
    await asyncio.gather(*(flag_then_check(box) for box in boxes))
    assert batch_sizes == []  # the write lock was free: each committed on the loop (0052)


async def test_flag_changes_on_one_mailbox_get_ascending_modseqs(store: SqliteStore,
                                                                 files: FileBlobStore) -> None:
    box = await inbox_of(store, "a@example.org")
    blob_id = await files.put(b"x")
    for _ in range(5):
        await store.append_message(box.id, NewMessage(blob_id, 1, WHEN, frozenset()))
    results = await asyncio.gather(*(
        store.store_flags(box.id, [uid], frozenset({f"$K{uid}"}), FlagMode.ADD)
        for uid in range(1, 6)))  # fmt: skip
    modseqs = [rows[0].modseq for rows in results]
    assert len(set(modseqs)) == 5
    after = await store.get_mailbox_by_id(box.id)
    assert after is not None and after.highest_modseq == max(modseqs)


async def test_a_failing_job_leaves_the_rest_of_its_batch_committed(
        store: SqliteStore, files: FileBlobStore, batch_sizes: list[int]) -> None:
    box = await inbox_of(store, "a@example.org")
    blob_id = await files.put(b"x")
    message = NewMessage(blob_id, 1, WHEN, frozenset())
    good, missing, gone = await asyncio.gather(
        store.append_message(box.id, message),
        store.append_message(99_999, message),
        store.expunge(99_999, [1]),
        return_exceptions=True)
    assert isinstance(missing, NotFound) and isinstance(gone, NotFound)
    assert not isinstance(good, BaseException) and good.uid == 1
    assert [m.uid for m in await store.list_messages(box.id)] == [1]
    assert batch_sizes == [3]  # all three ran in one transaction


async def test_expunge_unlinks_only_unreferenced_blobs_and_announces(
        store: SqliteStore, files: FileBlobStore, feed: ChangeFeed) -> None:
    box = await inbox_of(store, "a@example.org")
    other = await inbox_of(store, "b@example.org")
    shared, own = await files.put(b"shared"), await files.put(b"own")
    await store.append_message(box.id, NewMessage(shared, 6, WHEN, frozenset()))
    await store.append_message(box.id, NewMessage(own, 3, WHEN, frozenset()))
    await store.append_message(other.id, NewMessage(shared, 6, WHEN, frozenset()))
    subscription = feed.subscribe(box.account_id)
    expunged = await store.expunge(box.id, [1, 2, 7])
    assert expunged.uids == [1, 2]
    assert files.path(shared).exists() and not files.path(own).exists()
    change = await asyncio.wait_for(subscription.queue.get(), 5)
    assert change.mailbox_id == box.id and "expunge" in change.kinds
    assert change.modseq == expunged.modseq  # what a session follows its own expunge by
    assert await store.expunged_since(box.id, 0) == [1, 2]
    assert await store.expunge(box.id, [1]) == Expunged([], 0)  # gone already: no error


async def test_close_commits_what_is_queued(db_path: Path, files: FileBlobStore,
                                            feed: ChangeFeed) -> None:
    store = SqliteStore(db_path, files, feed)
    await store.open()
    box = await inbox_of(store, "a@example.org")
    blob_id = await files.put(b"x")
    appends = [asyncio.ensure_future(
        store.append_message(box.id, NewMessage(blob_id, 1, WHEN, frozenset())))
        for _ in range(5)]  # fmt: skip
    await asyncio.sleep(0)  # queued, not yet committed
    await store.close()
    assert sorted(task.result().uid for task in appends) == [1, 2, 3, 4, 5]
    assert on_disk(db_path, "SELECT count(*) FROM messages") == [(5,)]


async def test_batch_connection_is_as_durable_as_the_writer(store: SqliteStore) -> None:
    def pragmas(work: BatchWork) -> tuple[int, int, str]:
        synchronous = work.db.execute("PRAGMA synchronous").fetchone()[0]
        foreign_keys = work.db.execute("PRAGMA foreign_keys").fetchone()[0]
        journal = work.db.execute("PRAGMA journal_mode").fetchone()[0]
        return synchronous, foreign_keys, journal

    assert await store._batch.run(pragmas) == (2, 1, "wal")  # FULL, on, WAL


async def test_two_stores_on_one_file_take_turns_through_the_batch_lock(
        store: SqliteStore, db_path: Path, files: FileBlobStore, monkeypatch: pytest.MonkeyPatch
        ) -> None:
    """SMTP_PROCESSES: writers in different processes (here two stores, each with its own
    lock file descriptor) serialise on <db>-batch.lock, and every append commits once
    with its own UID."""
    import fcntl

    held: list[bool] = []
    real_flock = fcntl.flock

    def watching(fd: int, operation: int) -> None:
        if operation == fcntl.LOCK_UN:
            held.append(False)  # noted while still held: the list shows the true order
        real_flock(fd, operation)
        if operation == fcntl.LOCK_EX:
            held.append(True)
    monkeypatch.setattr(fcntl, "flock", watching)
    inbox = await inbox_of(store, "pat@example.test")
    other = SqliteStore(db_path, files, ChangeFeed())
    await other.open()
    try:
        rows = await asyncio.gather(*(
            writer.append_message(inbox.id, NewMessage(f"{n:032x}", 10, WHEN))
            for n in range(40) for writer in (store, other)))
    finally:
        await other.close()
    assert sorted(row.uid for row in rows) == list(range(1, 81))
    assert (db_path.parent / (db_path.name + "-batch.lock")).exists()
    assert held and held[::2] == [True] * (len(held) // 2)  # each lock is released again
    assert not any(held[1::2])


async def test_prepares_run_before_the_transaction_and_fsync_each_directory_once(
        store: SqliteStore, files: FileBlobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Blobs handed to append_message are written by the batch thread; a batch fsyncs
    each directory once; a failing prepare fails its own job only."""
    import postroom.store.sqlitebatch as sqlitebatch

    synced: list[Path] = []
    real_fsync_dir = sqlitebatch.fsync_dir

    def counting(directory: Path) -> None:
        synced.append(directory)
        real_fsync_dir(directory)
    monkeypatch.setattr(sqlitebatch, "fsync_dir", counting)
    inbox = await inbox_of(store, "pat@example.test")
    same_dir = ["ab" + f"{n:030x}" for n in range(3)]  # one fan-out directory
    results = await asyncio.gather(*(
        store.append_message(inbox.id, NewMessage(blob_id, 4, WHEN), body=b"body")
        for blob_id in same_dir), return_exceptions=True)
    assert not [r for r in results if isinstance(r, BaseException)]
    assert all(files.path(blob_id).read_bytes() == b"body" for blob_id in same_dir)
    assert synced.count(files.path(same_dir[0]).parent) <= len(same_dir)
    bad = store.append_message(inbox.id, NewMessage("../escape", 4, WHEN), body=b"x")
    good = store.append_message(inbox.id, NewMessage("cd" + "0" * 30, 4, WHEN), body=b"y")
    outcome = await asyncio.gather(bad, good, return_exceptions=True)
    assert isinstance(outcome[0], ValueError)  # a bad blob id: that job alone fails
    assert not isinstance(outcome[1], BaseException)
    assert [row.uid for row in await store.list_messages(inbox.id)] == [1, 2, 3, 4]


async def test_one_batch_with_several_bodies_fsyncs_their_directory_once(
        tmp_path: Path, files: FileBlobStore, feed: ChangeFeed,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import postroom.store.sqlitebatch as sqlitebatch

    synced: list[Path] = []
    monkeypatch.setattr(sqlitebatch, "fsync_dir", synced.append)
    writer = BatchWriter(tmp_path / "x.sqlite3", files, feed, asyncio.Lock(),
                         busy_timeout_ms=1000)
    await writer.open()
    try:
        pendings = [sqlitebatch._Pending(lambda work: 1, asyncio.get_running_loop().create_future(),
                                         lambda n=n: files.write_now("ef" + f"{n:030x}", b"z"))
                    for n in range(4)]
        outcomes = await writer._in_thread(writer._commit_batch, pendings)
    finally:
        await writer.close()
    assert [outcome.result for outcome in outcomes] == [1, 1, 1, 1]
    assert synced == [files.path("ef" + "0" * 30).parent]


def synchronous_of(store: SqliteStore) -> int:
    """The batch connection's PRAGMA synchronous (1 NORMAL, 2 FULL), read on its thread."""
    batch = store._batch  # the setting is the batch writer's own
    assert batch._thread is not None and batch._db is not None
    db = batch._db
    return int(batch._thread.submit(
        lambda: db.execute("PRAGMA synchronous").fetchone()[0]).result(5))


async def test_a_flag_change_finding_another_writer_tries_the_loop_again(
        store: SqliteStore, files: FileBlobStore, db_path: Path,
        batch_sizes: list[int]) -> None:
    """Issue 22: another process's batch holds the writers' flock for a moment; a flag
    change tries the loop again (LOOP_RETRIES) rather than queueing for the batch
    thread at once, and gives up to the queue when the lock stays taken."""
    box = await inbox_of(store, "a@example.org")
    blob_id = await files.put(b"x")
    await store.append_message(box.id, NewMessage(blob_id, 1, WHEN, frozenset()))
    batch_sizes.clear()
    other = os.open(db_path.with_name(db_path.name + "-batch.lock"), os.O_RDWR)
    try:
        fcntl.flock(other, fcntl.LOCK_EX)  # a batch of another process, in its transaction
        asyncio.get_running_loop().call_later(0.0002, fcntl.flock, other, fcntl.LOCK_UN)
        await store.store_flags(box.id, [1], frozenset({"$Soon"}), FlagMode.ADD)
        assert batch_sizes == []  # committed on the loop, on a later try
        fcntl.flock(other, fcntl.LOCK_EX)  # and now it stays taken
        asyncio.get_running_loop().call_later(0.1, fcntl.flock, other, fcntl.LOCK_UN)
        await store.store_flags(box.id, [1], frozenset({"$Late"}), FlagMode.ADD)
        assert batch_sizes == [1]  # through the queue, once the lock was free
    finally:
        os.close(other)
    assert on_disk(db_path, "SELECT flags FROM messages WHERE uid = 1") == [("$Late $Soon",)]


async def test_a_flag_change_for_many_messages_leaves_the_loop(
        store: SqliteStore, files: FileBlobStore, db_path: Path,
        batch_sizes: list[int]) -> None:
    """Only a small flag job commits on the event loop: one for more than
    LOOP_MAX_MESSAGES messages (STORE 1:* on a big mailbox) runs on the batch thread, so
    other sessions are never held for the length of its UPDATE."""
    box = await inbox_of(store, "a@example.org")
    blob_id = await files.put(b"x")
    count = LOOP_MAX_MESSAGES + 1
    for _ in range(count):
        await store.append_message(box.id, NewMessage(blob_id, 1, WHEN, frozenset()))
    batch_sizes.clear()
    flagged = await store.store_flags(box.id, list(range(1, count + 1)),
                                      frozenset({"\\Seen"}), FlagMode.ADD)
    assert len(flagged) == count
    assert batch_sizes == [1]  # through the batch thread, not on the loop
    assert on_disk(db_path, "SELECT count(*) FROM messages WHERE flags = '\\Seen'") == [(count,)]


async def test_flag_changes_commit_apart_from_durable_writes_and_without_fsync(
        store: SqliteStore, files: FileBlobStore, db_path: Path,
        batch_sizes: list[int]) -> None:
    """Decision 0052: a flag-only job commits at once on the loop when the write lock is
    free; when it is not, it waits in a batch of its own (synchronous=NORMAL), ahead of
    the durable jobs queued with it (FULL)."""
    box = await inbox_of(store, "a@example.org")
    blob_id = await files.put(b"x")
    await store.append_message(box.id, NewMessage(blob_id, 1, WHEN, frozenset()))
    batch_sizes.clear()
    flagged = await store.store_flags(box.id, [1], frozenset({"$Now"}), FlagMode.ADD)
    assert [row.flags for row in flagged] == [frozenset({"$Now"})]
    assert batch_sizes == []  # no batch, no thread hop: committed on the loop
    # Answered means committed: another connection sees it now.
    assert on_disk(db_path, "SELECT flags FROM messages WHERE uid = 1") == [("$Now",)]

    lock = store._batch._lock  # held as another writer would hold it
    await lock.acquire()
    jobs = [asyncio.ensure_future(
        store.store_flags(box.id, [1], frozenset({"$Mine"}), FlagMode.ADD))]
    await asyncio.sleep(0.05)  # its tries on the loop are over: it waits in the queue
    jobs += [asyncio.ensure_future(job) for job in (
        store.append_message(box.id, NewMessage(blob_id, 1, WHEN, frozenset())),
        store.append_message(box.id, NewMessage(blob_id, 1, WHEN, frozenset())))]
    await asyncio.sleep(0.05)
    assert not any(job.done() for job in jobs)  # the lock is held: everything waits
    lock.release()
    flagged, first, second = await asyncio.gather(*jobs)
    assert batch_sizes == [1, 2]  # the flag change did not wait in the appends' batch
    assert [row.flags for row in flagged] == [frozenset({"$Now", "$Mine"})]
    assert {first.uid, second.uid} == {2, 3}
    assert synchronous_of(store) == 2  # the last batch was a durable one: FULL
    await lock.acquire()
    waiting = asyncio.ensure_future(
        store.store_flags(box.id, [2], frozenset({"\\Seen"}), FlagMode.ADD))
    await asyncio.sleep(0.05)
    lock.release()
    await waiting
    assert synchronous_of(store) == 1  # a flag-only batch: NORMAL
    assert on_disk(db_path, "SELECT uid, flags FROM messages WHERE mailbox_id = ? "
                   "AND flags != '' ORDER BY uid", (box.id,)) == [
        (1, "$Mine $Now"), (2, "\\Seen")]
