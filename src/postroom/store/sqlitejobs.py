"""The SQLite backend's group-commit jobs (store/sqlitebatch.py runs them): append (one
message, or several all-or-none for MULTIAPPEND), STORE and EXPUNGE as plain functions
on the batch thread's sqlite3 connection, built from the statements shared in store/sql/.

Each statement costs the batch thread a GIL round trip, so the jobs use as few as they
can: the UID and MODSEQ come from the one UPDATE of the mailbox row (RETURNING), and a
flag change or expunge takes its MODSEQ only once something is found to change.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from postroom.store.api import Expunged, FlagMode, MessageRow, NewMessage
from postroom.store.blobs import FileBlobStore, fsync_dir
from postroom.store.errors import NotFound
from postroom.store.sql.dialect import SQLITE
from postroom.store.sql.messages import expunge_statements, select_expunged
from postroom.store.sql.rows import (
    INSERT_MESSAGE,
    SELECT_MESSAGES,
    TAKE_UID,
    UPDATE_FLAGS,
    flag_updates,
    flags_text,
    insert_params,
    new_message_row,
)
from postroom.store.sqlitebatch import BatchWork
from postroom.store.sqliteblobs import INSERT_INLINE_SQL

_SELECT_MESSAGES_IN = SELECT_MESSAGES + " AND uid" + SQLITE.in_uids + " ORDER BY uid"
_SELECT_EXPUNGED = select_expunged(SQLITE)



def _next_modseq(db: sqlite3.Connection, mailbox_id: int) -> tuple[int, int]:
    """Take the mailbox's next MODSEQ: (owner account id, the new highest_modseq)."""
    row = db.execute("UPDATE mailboxes SET highest_modseq = highest_modseq + 1 WHERE id = ?"
                     " RETURNING account_id, highest_modseq", (mailbox_id,)).fetchone()
    if row is None:
        raise NotFound(f"no mailbox with id {mailbox_id}")
    return int(row[0]), int(row[1])


def _check_mailbox(db: sqlite3.Connection, mailbox_id: int) -> None:
    if db.execute("SELECT 1 FROM mailboxes WHERE id = ?", (mailbox_id,)).fetchone() is None:
        raise NotFound(f"no mailbox with id {mailbox_id}")


def append_job(mailbox_id: int, message: NewMessage, saved: dt.datetime,
                inline_body: bytes | None, work: BatchWork) -> MessageRow:  # fmt: skip
    if inline_body is not None:  # the body's row, durable with the message's (sqliteblobs)
        work.db.execute(INSERT_INLINE_SQL, (message.blob_id, inline_body))
    row = work.db.execute(TAKE_UID, (mailbox_id,)).fetchone()
    if row is None:
        raise NotFound(f"no mailbox with id {mailbox_id}")
    account_id, uid, modseq = row
    message_row = new_message_row(mailbox_id, message, saved, uid, modseq)
    work.db.execute(INSERT_MESSAGE, insert_params(SQLITE, message_row, message.meta))
    work.changed(account_id, mailbox_id, "append", modseq)
    return message_row


def append_many_job(mailbox_id: int, messages: Sequence[NewMessage], saved: dt.datetime,
                    inline_bodies: Sequence[bytes | None], work: BatchWork
                    ) -> list[MessageRow]:  # fmt: skip
    """RFC 3502 MULTIAPPEND: every message or none. One job is one savepoint (or the whole
    transaction), so a message that fails rolls back those before it."""
    return [append_job(mailbox_id, message, saved, body, work)
            for message, body in zip(messages, inline_bodies, strict=True)]


def write_blobs_now(blobs: FileBlobStore, files: Sequence[tuple[str, bytes]]) -> Path:
    """A batch's `prepare` for several bodies: each file written; every directory but
    the one returned (the batch fsyncs that) fsynced here."""
    directories = {blobs.write_now(blob_id, data) for blob_id, data in files}
    last = directories.pop()
    for directory in directories:
        fsync_dir(directory)
    return last


def insert_inline_job(blob_id: str, data: bytes, work: BatchWork) -> None:
    work.db.execute(INSERT_INLINE_SQL, (blob_id, data))


def store_flags_job(mailbox_id: int, uids: Sequence[int], flags: frozenset[str],
                     mode: FlagMode, unchanged_since: int | None,
                     work: BatchWork) -> list[MessageRow]:  # fmt: skip
    db = work.db
    rows = db.execute(_SELECT_MESSAGES_IN, (mailbox_id, SQLITE.uids(uids))).fetchall()
    updates = flag_updates(rows, flags, mode, unchanged_since, dt.datetime.fromisoformat)
    if not updates:
        if not rows:
            _check_mailbox(db, mailbox_id)  # nothing found: a missing mailbox is an error
        return []
    account_id, modseq = _next_modseq(db, mailbox_id)  # one MODSEQ for the whole STORE
    changed = [replace(message, flags=new_flags, modseq=modseq)
               for message, new_flags in updates]  # fmt: skip
    db.executemany(UPDATE_FLAGS, [(flags_text(m.flags), modseq, mailbox_id, m.uid)
                                  for m in changed])  # fmt: skip
    work.changed(account_id, mailbox_id, "flags", modseq)
    return changed


def expunge_job(mailbox_id: int, uids: Sequence[int], work: BatchWork) -> Expunged:
    db = work.db
    rows = db.execute(_SELECT_EXPUNGED, (mailbox_id, SQLITE.uids(uids))).fetchall()
    if not rows:
        _check_mailbox(db, mailbox_id)
        return Expunged([], 0)
    account_id, modseq = _next_modseq(db, mailbox_id)
    found = [row[0] for row in rows]
    for sql, params in expunge_statements(SQLITE, mailbox_id, found, modseq):
        db.execute(sql, params)
    work.blobs.update(row[1] for row in rows)  # unlinked after COMMIT when unreferenced
    work.changed(account_id, mailbox_id, "expunge", modseq)
    return Expunged(found, modseq)


def finish_queue_job(entry_id: int, work: BatchWork) -> None:
    """A delivered queue row removed (issue 22: in a group commit, so parallel delivery
    lanes share its fsync); its blob is released after the COMMIT when unused."""
    rows = work.db.execute("DELETE FROM queue WHERE id = ? RETURNING blob_id",
                           (entry_id,)).fetchall()  # fmt: skip
    work.blobs.update(row[0] for row in rows)
