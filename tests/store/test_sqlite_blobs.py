"""Bodies of the SQLite backend (store/sqliteblobs.py): up to INLINE_LIMIT bytes a row of
`blob_data` written in the transaction of the row naming it, larger ones a file; rows go
in the transaction that drops their last reference. Checked against the database file and
the blob directory themselves, not only through the store's own reads."""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from postroom.store.api import NewMessage, QueueEntry
from postroom.store.changes import ChangeFeed
from postroom.store.errors import NotFound
from postroom.store.sqlite import SqliteStore, sqlite_store
from postroom.store.sqliteblobs import INLINE_LIMIT, SqliteBlobStore, is_inline
from postroom.store.sqliteloop import INLINE_ON_LOOP
from tests.store.test_sqlite import record_thread_reads

WHEN = dt.datetime(2026, 3, 1, 12, 30, tzinfo=dt.UTC)
SMALL = b"Subject: small\r\n\r\n" + b"s" * 4000 + b"\r\n"
LARGE = b"Subject: large\r\n\r\n" + b"L" * INLINE_LIMIT + b"\r\n"


@pytest.fixture
async def opened(tmp_path: Path) -> AsyncIterator[tuple[SqliteStore, SqliteBlobStore]]:
    store, blobs = sqlite_store(tmp_path / "postroom.sqlite3", tmp_path / "blobs", ChangeFeed())
    await store.open()
    try:
        yield store, blobs
    finally:
        await store.close()


def stored_rows(tmp_path: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(tmp_path / "postroom.sqlite3")) as db:
        return {row[0] for row in db.execute("SELECT id FROM blob_data")}


def stored_files(tmp_path: Path) -> set[str]:
    return {path.name for path in (tmp_path / "blobs").glob("??/*")}


async def inbox_of(store: SqliteStore, address: str = "alice@example.org") -> int:
    account = await store.create_account(address, "hash")
    mailbox = await store.get_mailbox(account.id, "INBOX")
    assert mailbox is not None
    return mailbox.id


async def append(store: SqliteStore, blobs: SqliteBlobStore, box: int, body: bytes) -> str:
    blob_id = blobs.new_id(len(body))
    await store.append_message(box, NewMessage(blob_id, len(body), WHEN, frozenset(), "{}"),
                               body=body)  # fmt: skip
    return blob_id


async def one_message_two_mailboxes(store: SqliteStore, blobs: SqliteBlobStore
                                    ) -> tuple[int, int, str, int]:  # fmt: skip
    """Alice's INBOX holding one small message, Bob's empty INBOX, the blob id and UID."""
    box = await inbox_of(store)
    other = await inbox_of(store, "bob@example.org")
    blob_id = await append(store, blobs, box, SMALL)
    (row,) = await store.list_messages(box)
    return box, other, blob_id, row.uid


async def test_small_bodies_are_rows_large_ones_files(
        opened: tuple[SqliteStore, SqliteBlobStore], tmp_path: Path) -> None:
    store, blobs = opened
    box = await inbox_of(store)
    small, large = await append(store, blobs, box, SMALL), await append(store, blobs, box, LARGE)
    at_limit = await blobs.put(b"x" * INLINE_LIMIT)
    assert is_inline(small) and is_inline(at_limit) and not is_inline(large)
    assert stored_rows(tmp_path) == {small, at_limit}
    assert stored_files(tmp_path) == {large}
    assert await blobs.read(small) == SMALL and await blobs.read(large) == LARGE
    assert await blobs.read(small, limit=9) == SMALL[:9]
    assert await blobs.read(large, limit=9) == LARGE[:9]


async def test_an_inline_body_survives_a_restart(tmp_path: Path) -> None:
    store, blobs = sqlite_store(tmp_path / "postroom.sqlite3", tmp_path / "blobs", ChangeFeed())
    await store.open()
    blob_id = await append(store, blobs, await inbox_of(store), SMALL)
    await store.close()
    store, blobs = sqlite_store(tmp_path / "postroom.sqlite3", tmp_path / "blobs", ChangeFeed())
    await store.open()
    try:
        assert await blobs.read(blob_id) == SMALL
    finally:
        await store.close()


async def test_opener_serves_both_kinds_and_reports_missing_ones(
        opened: tuple[SqliteStore, SqliteBlobStore]) -> None:
    store, blobs = opened
    box = await inbox_of(store)
    small, large = await append(store, blobs, box, SMALL), await append(store, blobs, box, LARGE)
    gone_row, gone_file = blobs.new_id(1), blobs.new_id(INLINE_LIMIT + 1)
    open_blob = await blobs.opener([small, large, gone_row, gone_file, small])
    for blob_id, body in ((small, SMALL), (large, LARGE)):
        with open_blob(blob_id) as handle:
            assert handle.read() == body
    for missing in (gone_row, gone_file):
        with pytest.raises(FileNotFoundError):
            open_blob(missing)
    with pytest.raises(FileNotFoundError):
        await blobs.read(gone_row)


async def test_a_few_small_bodies_are_read_on_the_loop_more_on_the_reader_thread(
        opened: tuple[SqliteStore, SqliteBlobStore], monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 22: a FETCH of a few messages' headers reads their rows on the event loop
    and opens them there (`in_memory`); files, and more rows than INLINE_ON_LOOP, are
    read on threads. The answers are the same either way."""
    store, blobs = opened
    box = await inbox_of(store)
    bodies = {await append(store, blobs, box, SMALL + bytes([n])): SMALL + bytes([n])
              for n in range(INLINE_ON_LOOP + 1)}
    large = await append(store, blobs, box, LARGE)
    assert [blobs.in_memory(b) for b in (*bodies, large)] == [True] * len(bodies) + [False]
    on_thread = record_thread_reads(monkeypatch)
    few = list(bodies)[:INLINE_ON_LOOP]
    open_blob = await blobs.opener(few)
    assert on_thread == []
    assert [open_blob(blob_id).read() for blob_id in few] == [bodies[b] for b in few]
    open_blob = await blobs.opener(list(bodies))  # one more than the loop takes
    assert len(on_thread) == 1
    assert [open_blob(blob_id).read() for blob_id in bodies] == list(bodies.values())


async def test_a_row_goes_with_its_last_reference(
        opened: tuple[SqliteStore, SqliteBlobStore], tmp_path: Path) -> None:
    store, blobs = opened
    box, other, blob_id, uid = await one_message_two_mailboxes(store, blobs)
    await store.copy_messages(box, [uid], other)
    await store.expunge(box, [uid])
    assert blob_id in stored_rows(tmp_path)  # the copy still refers to it
    (copied,) = await store.list_messages(other)
    await store.expunge(other, [copied.uid])
    assert blob_id not in stored_rows(tmp_path)
    with pytest.raises(FileNotFoundError):
        await blobs.read(blob_id)


async def test_move_keeps_the_body(opened: tuple[SqliteStore, SqliteBlobStore]) -> None:
    store, blobs = opened
    box, other, blob_id, uid = await one_message_two_mailboxes(store, blobs)
    await store.move_messages(box, [uid], other)
    assert await blobs.read(blob_id) == SMALL


async def test_queue_references_keep_a_row_until_released(
        opened: tuple[SqliteStore, SqliteBlobStore], tmp_path: Path) -> None:
    store, blobs = opened
    queued, orphan = await blobs.put(SMALL), await blobs.put(b"orphan")
    await store.enqueue([QueueEntry(0, "q1", "a@example.org", "x@remote.example",
                                    "remote.example", queued, len(SMALL), WHEN, WHEN, 0, "")])
    for blob_id in (queued, orphan):
        await store.release_blob_if_unused(blob_id)
    assert stored_rows(tmp_path) == {queued}
    await store.delete_queue_message("q1")
    assert stored_rows(tmp_path) == set()


async def test_deleting_an_account_deletes_its_rows(
        opened: tuple[SqliteStore, SqliteBlobStore], tmp_path: Path) -> None:
    store, blobs = opened
    box = await inbox_of(store)
    await append(store, blobs, box, SMALL)
    await append(store, blobs, box, LARGE)
    await store.delete_account("alice@example.org")
    assert stored_rows(tmp_path) == set() and stored_files(tmp_path) == set()


async def test_a_failed_append_leaves_no_row(
        opened: tuple[SqliteStore, SqliteBlobStore], tmp_path: Path) -> None:
    store, blobs = opened
    with pytest.raises(NotFound):
        await append(store, blobs, 987654, SMALL)
    assert stored_rows(tmp_path) == set()


async def test_delete_removes_either_kind(
        opened: tuple[SqliteStore, SqliteBlobStore], tmp_path: Path) -> None:
    _, blobs = opened
    small, large = await blobs.put(SMALL), await blobs.put(LARGE)
    await blobs.delete(small)
    await blobs.delete(large)
    assert stored_rows(tmp_path) == set() and stored_files(tmp_path) == set()


async def test_the_readme_backup_restores_both_kinds(
        opened: tuple[SqliteStore, SqliteBlobStore], tmp_path: Path) -> None:
    """README "Where the data lives, and backups": SQLite's online backup while serving,
    then the blob files; a large body expunged between the two steps reads as gone."""
    store, blobs = opened
    box = await inbox_of(store)
    small, large = await append(store, blobs, box, SMALL), await append(store, blobs, box, LARGE)
    expunged_later = await append(store, blobs, box, LARGE)
    copy = tmp_path / "backup"
    copy.mkdir()
    with contextlib.closing(sqlite3.connect(tmp_path / "postroom.sqlite3")) as source, \
            contextlib.closing(sqlite3.connect(copy / "postroom.sqlite3")) as target:
        source.backup(target)  # what the sqlite3 shell's ".backup" does
    (last,) = [row for row in await store.list_messages(box) if row.blob_id == expunged_later]
    await store.expunge(box, [last.uid])
    shutil.copytree(tmp_path / "blobs", copy / "blobs")
    restored, restored_blobs = sqlite_store(copy / "postroom.sqlite3", copy / "blobs",
                                            ChangeFeed())  # fmt: skip
    await restored.open()
    try:
        assert await restored_blobs.read(small) == SMALL
        assert await restored_blobs.read(large) == LARGE
        assert len(await restored.list_messages(box)) == 3
        with pytest.raises(FileNotFoundError):
            await restored_blobs.read(expunged_later)
    finally:
        await restored.close()
