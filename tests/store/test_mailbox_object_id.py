"""Issue 17: every mailbox has a never-reused identity, `Mailbox.object_id` (migration
0010), on every backend: what the IMAP server keys per-mailbox state by (\\Recent claims)
and what RFC 8474 OBJECTID reports as MAILBOXID."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from postroom.store.api import Store
from tests.store.conftest import StoreMaker
from tests.store.test_contract import new_account

# RFC 8474 §4: objectid = 1*255(ALPHA / DIGIT / "_" / "-"); ours start with "M".
OBJECT_ID = re.compile(r"M[A-Za-z0-9_-]{22,254}")


async def test_created_mailboxes_have_distinct_object_ids(store: Store) -> None:
    account = await new_account(store)
    created = [await store.create_mailbox(account, f"Box{n}") for n in range(20)]
    listed = await store.list_mailboxes(account)  # INBOX & co. too, made with the account
    ids = [box.object_id for box in listed]
    assert all(OBJECT_ID.fullmatch(value) for value in ids), ids
    assert len(set(ids)) == len(ids)
    for box in created:
        assert (await store.get_mailbox_by_id(box.id)) == box
        assert (await store.get_mailbox(account, box.name)) == box


async def test_recreated_name_gets_a_new_object_id_rename_keeps_it(store: Store) -> None:
    account = await new_account(store)
    first = await store.create_mailbox(account, "Reused")
    await store.delete_mailbox(first.id)
    second = await store.create_mailbox(account, "Reused")
    # SQLite hands the row id back (the newest row was deleted); the identity differs.
    assert second.object_id != first.object_id
    await store.rename_mailbox(second.id, "Moved")
    moved = await store.get_mailbox(account, "Moved")
    assert moved is not None and moved.object_id == second.object_id


async def test_inbox_rename_makes_a_mailbox_of_its_own(store: Store) -> None:
    account = await new_account(store)
    inbox = await store.get_mailbox(account, "INBOX")
    assert inbox is not None
    await store.rename_mailbox(inbox.id, "Old")
    old = await store.get_mailbox(account, "Old")
    after = await store.get_mailbox(account, "INBOX")
    assert old is not None and after is not None
    assert after.object_id == inbox.object_id and old.object_id != inbox.object_id
    assert OBJECT_ID.fullmatch(old.object_id)


def _downgrade(backend: str, tmp_path: Path, database_url: str) -> None:
    """Put the database back to before migration 0010 (object_id gone)."""
    if backend == "sqlite":
        db = sqlite3.connect(tmp_path / "db" / "postroom.sqlite3")
        db.execute("DROP TRIGGER mailboxes_object_id_fill")
        db.execute("DROP INDEX mailboxes_object_id")
        db.execute("ALTER TABLE mailboxes DROP COLUMN object_id")
        db.execute("DELETE FROM schema_version WHERE version = 10")
        db.commit()
        db.close()
        return
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE mailboxes DROP COLUMN object_id")
        conn.execute("DELETE FROM schema_version WHERE version = 10")


async def test_migration_gives_existing_mailboxes_object_ids(
        backend: str, store: Store, make_store: StoreMaker, tmp_path: Path,
        database_url: str) -> None:  # fmt: skip
    account = await new_account(store)
    await store.create_mailbox(account, "Kept/Deep")
    before = {box.name: box.id for box in await store.list_mailboxes(account)}
    await store.close()
    _downgrade(backend, tmp_path, database_url)
    reopened = make_store()  # a PostgreSQL pool cannot be opened twice
    await reopened.open()
    try:
        boxes = await reopened.list_mailboxes(account)
        assert {box.name: box.id for box in boxes} == before
        ids = [box.object_id for box in boxes]
        assert all(OBJECT_ID.fullmatch(value) for value in ids), ids
        assert len(set(ids)) == len(ids)
        made = await reopened.create_mailbox(account, "After")
        assert OBJECT_ID.fullmatch(made.object_id) and made.object_id not in ids
    finally:
        await reopened.close()


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_sqlite_row_inserted_without_object_id_gets_one(
        backend: str, store: Store, tmp_path: Path) -> None:  # fmt: skip
    account = await new_account(store)
    await store.close()
    db = sqlite3.connect(tmp_path / "db" / "postroom.sqlite3")
    db.execute("INSERT INTO mailboxes (account_id, name, uidvalidity) VALUES (?, 'Raw', 7)",
               (account,))  # fmt: skip
    db.commit()
    (value,) = db.execute("SELECT object_id FROM mailboxes WHERE name = 'Raw'").fetchone()
    db.close()
    assert OBJECT_ID.fullmatch(value)  # the trigger of migration 0010
    await store.open()
