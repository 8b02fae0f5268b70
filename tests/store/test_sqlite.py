"""SQLite-specific behaviour: pragmas, migrations, write serialisation, large mailboxes."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from postroom.store import sqlite as sqlite_module
from postroom.store import sqliteloop
from postroom.store.api import FlagMode, NewMessage
from postroom.store.blobs import FileBlobStore
from postroom.store.changes import ChangeFeed
from postroom.store.migrate import Migration, load_migrations, migrate, pending_migrations
from postroom.store.sqlite import SqliteStore, split_statements

WHEN = dt.datetime(2026, 2, 3, 4, 5, 6, tzinfo=dt.UTC)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "nested" / "dir" / "postroom.sqlite3"


@pytest.fixture
async def sqlite_store(
    db_path: Path, files: FileBlobStore, feed: ChangeFeed
) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(db_path, files, feed)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def query(path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute(sql).fetchall()


async def test_open_creates_folder_and_uses_wal(sqlite_store: SqliteStore, db_path: Path) -> None:
    assert db_path.exists()
    assert query(db_path, "PRAGMA journal_mode") == [("wal",)]


async def test_connection_pragmas(sqlite_store: SqliteStore) -> None:
    writer = sqlite_store._writer
    assert writer is not None
    assert list(await writer.execute_fetchall("PRAGMA synchronous")) == [(2,)]  # FULL
    assert list(await writer.execute_fetchall("PRAGMA foreign_keys")) == [(1,)]
    assert next(iter(await writer.execute_fetchall("PRAGMA busy_timeout")))[0] > 0


async def test_migration_is_idempotent(
    db_path: Path, files: FileBlobStore, feed: ChangeFeed
) -> None:
    shipped = [m.version for m in load_migrations("sqlite")]
    assert shipped[0] == 1 and shipped == sorted(set(shipped))
    for _ in range(2):
        store = SqliteStore(db_path, files, feed)
        await store.open()
        await store.close()
    rows = query(db_path, "SELECT version FROM schema_version ORDER BY version")
    assert [row[0] for row in rows] == shipped


class RecordingTarget:
    def __init__(self, applied: set[int]) -> None:
        self.applied = applied
        self.calls: list[int] = []

    async def applied_versions(self) -> set[int]:
        return set(self.applied)

    async def apply(self, migration: Migration) -> bool:
        self.calls.append(migration.version)
        self.applied.add(migration.version)
        return True


async def test_migrate_applies_only_pending_in_order() -> None:
    target = RecordingTarget(set())
    first = await migrate(target, "sqlite")
    assert first == target.calls == [m.version for m in load_migrations("sqlite")]
    assert await migrate(target, "sqlite") == []
    assert target.calls == first
    assert pending_migrations(
        [Migration(1, "a", ""), Migration(2, "b", ""), Migration(3, "c", "")], {1, 3}
    ) == [Migration(2, "b", "")]


def test_split_statements_keeps_trigger_bodies() -> None:
    script = (
        "-- comment\nCREATE TABLE t (a INTEGER);\n"
        "CREATE TRIGGER tr AFTER INSERT ON t BEGIN\n  UPDATE t SET a = 1;\nEND;\n"
        "-- trailing comment\n"
    )
    statements = split_statements(script)
    assert len(statements) == 3
    assert statements[1].startswith("CREATE TRIGGER") and statements[1].endswith("END;")


async def test_concurrent_appends_get_distinct_ascending_uids(
    sqlite_store: SqliteStore, files: FileBlobStore
) -> None:
    account = await sqlite_store.create_account("a@example.org", "h")
    inbox = await sqlite_store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    blob_id = await files.put(b"x")

    async def append(n: int) -> tuple[int, int]:
        row = await sqlite_store.append_message(
            inbox.id, NewMessage(blob_id, 1, WHEN, frozenset({f"$T{n}"}))
        )
        return row.uid, row.modseq

    results = await asyncio.gather(*(append(n) for n in range(60)))
    uids = [uid for uid, _ in results]
    modseqs = [modseq for _, modseq in results]
    assert len(set(uids)) == 60 and len(set(modseqs)) == 60
    # Each uid goes with a larger modseq than every smaller uid: one allocation order.
    assert [m for _, m in sorted(results)] == sorted(modseqs)
    listed = await sqlite_store.list_messages(inbox.id)
    assert [m.uid for m in listed] == sorted(uids) == list(range(1, 61))
    after = await sqlite_store.get_mailbox_by_id(inbox.id)
    assert after is not None and after.uidnext == 61


def bulk_insert(path: Path, mailbox_id: int, count: int, blob_id: str) -> None:
    rows = [
        (mailbox_id, uid, uid + 1, blob_id, 100, WHEN.isoformat(),
         "\\Seen" if uid % 2 else "", "2026-02-03T04:05:06.000000+00:00")
        for uid in range(1, count + 1)
    ]  # fmt: skip
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO messages (mailbox_id, uid, modseq, blob_id, size, internal_date,"
            " flags, saved_date) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        db.execute(
            "UPDATE mailboxes SET uidnext = ?, highest_modseq = ? WHERE id = ?",
            (count + 1, count + 1, mailbox_id),
        )


async def test_list_messages_on_a_large_mailbox(
    sqlite_store: SqliteStore, files: FileBlobStore, db_path: Path
) -> None:
    account = await sqlite_store.create_account("big@example.org", "h")
    inbox = await sqlite_store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    count = 20_000
    await asyncio.to_thread(bulk_insert, db_path, inbox.id, count, await files.put(b"x"))
    started = time.perf_counter()
    rows = await sqlite_store.list_messages(inbox.id)
    elapsed = time.perf_counter() - started
    assert len(rows) == count and rows[0].uid == 1 and rows[-1].uid == count
    assert rows[0].flags == {"\\Seen"} and rows[1].flags == frozenset()
    assert elapsed < 2.0, f"list_messages took {elapsed:.2f}s for {count} rows"
    changed = await sqlite_store.store_flags(
        inbox.id, [5, 10_000], frozenset({"$New"}), FlagMode.ADD
    )
    recent = await sqlite_store.list_messages(inbox.id, changed_since=count + 1)
    assert [m.uid for m in recent] == [5, 10_000] == [m.uid for m in changed]
    counts = await sqlite_store.mailbox_counts(inbox.id)
    assert (counts.messages, counts.unseen, counts.size) == (count, count // 2, count * 100)


def explain(path: Path, sql: str) -> str:
    with sqlite3.connect(path) as db:
        return " ".join(str(row[-1]) for row in db.execute("EXPLAIN QUERY PLAN " + sql))


def test_message_listing_queries_use_indexes(tmp_path: Path) -> None:
    # The schema alone decides the plan; build it with the shipped migration.
    path = tmp_path / "plan.sqlite3"
    with sqlite3.connect(path) as db:
        for statement in split_statements(load_migrations("sqlite")[0].sql):
            db.execute(statement)
    everything = explain(path, "SELECT uid FROM messages WHERE mailbox_id = 1 ORDER BY uid")
    assert "SCAN" not in everything and "TEMP B-TREE" not in everything, everything
    changed = explain(
        path, "SELECT uid FROM messages WHERE mailbox_id = 1 AND modseq > 5 ORDER BY uid"
    )
    assert "USING INDEX messages_modseq" in changed, changed
    vanished = explain(path, "SELECT uid FROM expunged WHERE mailbox_id = 1 AND modseq > 5")
    assert "USING INDEX expunged_modseq" in vanished, vanished


class _BusyOnce:
    """Stands in for the on-loop connection: the first read finds the database busy."""

    def __init__(self, real: sqlite3.Connection) -> None:
        self.real = real
        self.calls = 0

    def execute(self, sql: str, params: object = ()) -> sqlite3.Cursor:
        self.calls += 1
        if self.calls == 1:
            error = sqlite3.OperationalError("database is locked")
            error.sqlite_errorcode = sqlite3.SQLITE_BUSY  # type: ignore[attr-defined]
            raise error
        return self.real.execute(sql, params)  # type: ignore[arg-type]

    def close(self) -> None:
        self.real.close()


async def test_point_reads_run_on_the_loop_and_fall_back_when_busy(
        sqlite_store: SqliteStore) -> None:
    """Issue 8: account/mailbox lookups skip the reader thread; when SQLite would have
    to wait (busy), the read goes to the reader thread instead of blocking the loop."""
    account = await sqlite_store.create_account("pat@example.test", "hash")
    assert sqlite_store._on_loop is not None
    stand_in = _BusyOnce(sqlite_store._on_loop)
    sqlite_store._on_loop = stand_in  # type: ignore[assignment]
    assert await sqlite_store.get_account("PAT@example.test") == account  # via the thread
    inbox = await sqlite_store.get_mailbox(account.id, "INBOX")  # on the loop
    assert inbox is not None and inbox.account_id == account.id
    assert await sqlite_store.get_mailbox_by_id(inbox.id) == inbox
    assert await sqlite_store.is_local_domain("example.test")
    assert not await sqlite_store.is_local_domain("elsewhere.test")
    assert stand_in.calls == 5


async def test_point_reads_see_writes_committed_by_the_batch_writer(
        sqlite_store: SqliteStore) -> None:
    account = await sqlite_store.create_account("kim@example.test", "hash")
    inbox = await sqlite_store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    await sqlite_store.append_message(inbox.id, NewMessage("b" * 32, 10, WHEN))
    after = await sqlite_store.get_mailbox_by_id(inbox.id)
    assert after is not None and after.uidnext == inbox.uidnext + 1


async def test_point_read_errors_other_than_busy_propagate(sqlite_store: SqliteStore) -> None:
    with pytest.raises(sqlite3.OperationalError):
        await sqlite_store._point_row("SELECT * FROM no_such_table", ())


def record_thread_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The statements the store runs on its reader or writer thread, from now on."""
    on_thread: list[str] = []
    fetch = sqlite_module._fetch

    async def recording(db: object, sql: str, params: object = ()) -> list[object]:
        on_thread.append(sql)
        return await fetch(db, sql, params)  # type: ignore[arg-type]

    monkeypatch.setattr(sqlite_module, "_fetch", recording)
    return on_thread


async def test_a_long_read_on_the_loop_goes_to_the_reader_thread(
        sqlite_store: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 22: an account's mailbox list is read on the loop, but SQLite's progress
    handler stops any statement there after ON_LOOP_STEPS steps, and the read is made
    again on the reader thread (an account with very many mailboxes holds nobody up)."""
    account = await sqlite_store.create_account("lee@example.test", "hash")
    for number in range(40):
        await sqlite_store.create_mailbox(account.id, f"Box {number:02}")
    on_thread = record_thread_reads(monkeypatch)
    names = [box.name for box in await sqlite_store.list_mailboxes(account.id)]
    assert names[0] == "INBOX" and {f"Box {n:02}" for n in range(40)} <= set(names)
    assert on_thread == []  # within the budget: on the loop
    assert sqlite_store._on_loop is not None
    sqlite_store._on_loop.set_progress_handler(sqliteloop.too_long, 50)  # a tiny budget
    assert [box.name for box in await sqlite_store.list_mailboxes(account.id)] == names
    assert len(on_thread) == 1 and "FROM mailboxes" in on_thread[0]  # interrupted, re-read
    assert "INBOX" in await sqlite_store.list_subscriptions(account.id)  # the same way


async def test_a_read_that_ran_out_of_steps_goes_off_the_loop_from_then_on(
        sqlite_store: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """STATUS's counts, a refresh's changes and a FETCH's few rows are read on the loop;
    one that once ran past the budget (a very large mailbox) is sent to the reader thread
    straight away after that, without spending the budget again."""
    account = await sqlite_store.create_account("sam@example.test", "hash")
    inbox = await sqlite_store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    for _ in range(30):
        await sqlite_store.append_message(inbox.id, NewMessage("c" * 32, 10, WHEN))
    on_thread = record_thread_reads(monkeypatch)
    counts = await sqlite_store.mailbox_counts(inbox.id)
    first = await sqlite_store.get_message(inbox.id, 1)
    assert first is not None
    changed = await sqlite_store.list_messages(inbox.id, changed_since=first.modseq)
    few = await sqlite_store.get_messages(inbox.id, [1, 2, 3])
    assert (counts.messages, len(changed), [m.uid for m in few]) == (30, 29, [1, 2, 3])
    assert on_thread == []  # all on the loop

    assert sqlite_store._on_loop is not None
    sqlite_store._on_loop.set_progress_handler(sqliteloop.too_long, 50)  # a tiny budget
    assert await sqlite_store.mailbox_counts(inbox.id) == counts
    assert len(on_thread) == 1  # interrupted, read again off the loop
    tries: list[int] = []

    def counting() -> int:
        tries.append(1)
        return 1

    sqlite_store._on_loop.set_progress_handler(counting, 50)
    assert await sqlite_store.mailbox_counts(inbox.id) == counts
    assert len(on_thread) == 2 and tries == []  # straight to the thread: remembered
    other = await sqlite_store.create_mailbox(account.id, "Other")
    on_thread.clear()
    assert (await sqlite_store.mailbox_counts(other.id)).messages == 0
    assert on_thread == []  # another (empty) mailbox's counts: on the loop, in budget


def test_long_reads_are_bounded_and_forget_the_least_recent() -> None:
    reads = sqliteloop.LongReads()
    for number in range(sqliteloop.LONG_READS_KEPT + 1):
        reads.remember("SELECT ?", (number,))
    assert ("SELECT ?", (0,)) not in reads
    assert ("SELECT ?", (1,)) in reads and ("SELECT ?", (sqliteloop.LONG_READS_KEPT,)) in reads
    reads.remember("SELECT ?", ([1, 2],))  # unhashable parameters: not remembered
    assert ("SELECT ?", ([1, 2],)) not in reads
