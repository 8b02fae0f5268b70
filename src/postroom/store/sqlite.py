"""The SQLite Store backend (aiosqlite), the default for a single-node install.

Owns the SQLite database file: its pragmas, its schema (through `store/migrate.py`) and
every query. Nothing else in postroom imports aiosqlite (ARCHITECTURE.md rule 2).

Invariants beyond those in `store/api.py`:
- Two writing connections (aiosqlite's, and the group-commit one below); every write
  runs in `BEGIN IMMEDIATE … COMMIT` under one asyncio.Lock, so within this process
  writes are serialised and UID/MODSEQ allocation (read-increment-write on the mailbox
  row) cannot race. Reads go through a third connection; WAL lets them run beside the
  writers and see every committed write.
- Point reads (one row by a unique key: account, mailbox, domain, alias, ban — what
  every RCPT and LOGIN asks) run on the event loop on a fourth, plain sqlite3
  connection (`_point_read`): answered from SQLite's cache they take microseconds, while
  a hop to a reader thread and back costs ~0.2 ms of CPU in futexes and GIL handoffs
  (issue 8: five such hops per received message). That connection never waits: with
  busy_timeout 0, a read that finds the WAL index locked (recovery, a checkpoint
  restarting the log) goes to the reader thread instead.
- synchronous=FULL: a commit is on disk before the method returns (rule 10).
- The hot writes (append_message, store_flags, expunge) go through the group commit in
  store/sqlitebatch.py: waiting jobs of all sessions share one transaction, one thread
  hop and one WAL fsync, under the same write lock.
- Change-feed events are published only after COMMIT. A blob file is deleted only after
  the COMMIT that dropped its last reference (a crash in between leaks a file, never
  loses one that is still referenced); a small body kept as a `blob_data` row
  (store/sqliteblobs.py) goes in that very transaction.
- Times the store compares (queue times, saved dates) are UTC text in one fixed-width
  format, so text order is time order; internal dates keep their original UTC offset.
- Opening checks before serving (issue 25): a DATA_DIR holding mail never gets a blank
  database created under it, `PRAGMA quick_check` must pass, and the database's install
  id must be DATA_DIR's (store/migrate.py) — each refusal is one line (`InstallMismatch`,
  `StorageCorrupt`). Running, SQLite's "full", "corrupt" and I/O errors leave as
  store/errors.py's StorageFailures; a write that found the file damaged sets `damage`,
  after which the SMTP drivers accept no new transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import json
import sqlite3
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import aiosqlite

from postroom.errors import Refused
from postroom.store import api
from postroom.store.api import (
    DEFAULT_MAILBOXES,
    Account,
    AccountSummary,
    Alias,
    Ban,
    Change,
    CopyResult,
    Expunged,
    FlagColumns,
    FlagMode,
    Mailbox,
    MailboxCounts,
    MailboxUsage,
    MessageRow,
    NewMessage,
    QueueEntry,
    SelectSummary,
    SpecialUse,
    keywords_of,
    recorded_expunges,
    with_forgotten,
)
from postroom.store.blobs import FileBlobStore
from postroom.store.changes import ChangeFeed
from postroom.store.errors import (
    AlreadyExists,
    NotFound,
    StorageCorrupt,
    raise_storage_failure,
    storage_failure,
)
from postroom.store.migrate import (
    SCHEMA_VERSION_DDL,
    Migration,
    check_install,
    migrate,
    refuse_missing_database,
)
from postroom.store.sqlitebatch import BatchWork, BatchWriter
from postroom.store.sqliteblobs import (
    BLOB_IN_USE_SQL,
    DELETE_INLINE_IF_UNUSED_SQL,
    INSERT_INLINE_SQL,
    SqliteBlobStore,
    is_inline,
)

INBOX = "INBOX"
SEPARATOR = "/"
_BUSY_TIMEOUT_MS = 10_000
_ROWS_BUILT_ON_LOOP = 2_000

_SELECT_MESSAGES = (
    "SELECT mailbox_id, uid, modseq, blob_id, size, internal_date, flags, saved_date"
    " FROM messages WHERE mailbox_id = ?"
)
_SELECT_FLAG_COLUMNS = (
    "SELECT json_group_array(uid), json_group_array(modseq), group_concat(flags, char(10))"
    " FROM (SELECT uid, modseq, flags FROM messages WHERE mailbox_id = ? ORDER BY uid)"
)
# SELECT's answer in one statement (one snapshot), all index-only: the UIDs as one JSON
# array (json.loads parses 100,000 numbers in C, twice as fast as split + int), the
# distinct flag values, and the first UID without \Seen — searched only when some
# distinct value lacks it, so a mailbox with nothing unseen costs no second pass. Flags
# are sorted, space-separated atoms and only a system flag starts with a backslash, so
# "\Seen " within flags || ' ' is exactly the \Seen flag; the search compares each row's
# flags with the few unseen values instead. (Not GROUP BY flags with min(uid): it sorts
# every row.)
_SELECT_SUMMARY = (
    "WITH sets AS MATERIALIZED (SELECT DISTINCT flags FROM messages WHERE mailbox_id = ?1)"
    " SELECT (SELECT json_group_array(uid) FROM"
    " (SELECT uid FROM messages WHERE mailbox_id = ?1 ORDER BY uid)),"
    " (SELECT json_group_array(flags) FROM sets),"
    " CASE WHEN EXISTS (SELECT 1 FROM sets WHERE instr(flags || ' ', '\\Seen ') = 0)"
    " THEN (SELECT uid FROM messages WHERE mailbox_id = ?1 AND flags IN"
    " (SELECT flags FROM sets WHERE instr(flags || ' ', '\\Seen ') = 0) ORDER BY uid LIMIT 1)"
    " END"
)
_INSERT_MESSAGE = (
    "INSERT INTO messages (mailbox_id, uid, modseq, blob_id, size, internal_date, flags,"
    " saved_date, meta) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# RFC 4315 §3 COPY keeps flags and internal date; saved_date is the copy's own (RFC 8514).
_COPY_MESSAGE = (
    "INSERT INTO messages (mailbox_id, uid, modseq, blob_id, size, internal_date, flags,"
    " saved_date, meta) SELECT ?, ?, ?, blob_id, size, internal_date, flags, ?, meta"
    " FROM messages WHERE mailbox_id = ? AND uid = ?"
)
_MAILBOX_SELECT = (
    "SELECT b.id, b.account_id, b.name, b.uidvalidity, b.uidnext, b.highest_modseq,"
    " b.special_use, EXISTS (SELECT 1 FROM subscriptions s"
    " WHERE s.account_id = b.account_id AND s.name = b.name) FROM mailboxes b"
)
_SELECT_QUEUE = (
    "SELECT id, message_id, sender, recipient, domain, blob_id, size, created, next_attempt,"
    " attempts, last_error, envid, notify FROM queue"
)
_INSERT_QUEUE = (
    "INSERT INTO queue (message_id, sender, recipient, domain, blob_id, size, created,"
    " next_attempt, attempts, last_error, envid, notify)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id"
)

_SELECT_BANS = "SELECT address, created, expires, failures, reason FROM bans"
_SELECT_USAGE = (
    "SELECT b.message_count, b.total_size, sum(o.message_count), sum(o.total_size)"
    " FROM mailboxes b JOIN mailboxes o ON o.account_id = b.account_id WHERE b.id = ?"
    " GROUP BY b.id"
)
_SELECT_MESSAGES_IN = (
    "SELECT mailbox_id, uid, modseq, blob_id, size, internal_date, flags, saved_date"
    " FROM messages WHERE mailbox_id = ? AND uid IN (SELECT value FROM json_each(?)) ORDER BY uid"
)

Row = Any  # sqlite3 rows are plain tuples here (no row_factory)


# -- value conversion ------------------------------------------------------------------


def _aware(when: dt.datetime) -> dt.datetime:
    """Naive datetimes are taken as UTC; the store only ever returns aware ones."""
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when


def _utc_text(when: dt.datetime) -> str:
    # Fixed width, YYYY-MM-DDTHH:MM:SS.ffffff+00:00 (the text order is the time order);
    # isoformat takes a fifth of strftime's time, and every connection's ban check
    # formats one.
    return _aware(when).astimezone(dt.UTC).isoformat(timespec="microseconds")


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _flags_text(flags: Iterable[str]) -> str:
    # Flags are IMAP atoms (RFC 9051 §9 flag-keyword), so they never contain a space.
    return " ".join(sorted(flags))


def _uids_json(uids: Iterable[int]) -> str:
    return json.dumps(sorted({int(uid) for uid in uids}))


def normalise_mailbox_name(name: str) -> str:
    # RFC 9051 §5.1: "INBOX" is case-insensitive; every other name is case-sensitive.
    return INBOX if name.upper() == INBOX else name


def _domain_of(address: str) -> str:
    return address.rpartition("@")[2]


def _apply_flags(current: frozenset[str], flags: frozenset[str], mode: FlagMode) -> frozenset[str]:
    # RFC 9051 §6.4.6: FLAGS replaces, +FLAGS adds, -FLAGS removes.
    if mode is FlagMode.REPLACE:
        return flags
    if mode is FlagMode.ADD:
        return current | flags
    return current - flags


def _message_from_row(row: Row, flag_cache: dict[str, frozenset[str]]) -> MessageRow:
    flags = flag_cache.get(row[6])
    if flags is None:
        flags = flag_cache[row[6]] = frozenset(row[6].split())
    return MessageRow(
        row[0], row[1], row[2], row[3], row[4],
        dt.datetime.fromisoformat(row[5]), flags, dt.datetime.fromisoformat(row[7]),
    )  # fmt: skip


def _messages_from_rows(rows: list[Row]) -> list[MessageRow]:
    flag_cache: dict[str, frozenset[str]] = {}  # few distinct flag sets: share the frozensets
    return [_message_from_row(row, flag_cache) for row in rows]


def _mailbox_from_row(row: Row) -> Mailbox:
    special_use = SpecialUse(row[6]) if row[6] else None
    return Mailbox(row[0], row[1], row[2], row[3], row[4], row[5], special_use, bool(row[7]))


def _queue_from_row(row: Row) -> QueueEntry:
    return QueueEntry(
        row[0], row[1], row[2], row[3], row[4], row[5], row[6],
        dt.datetime.fromisoformat(row[7]), dt.datetime.fromisoformat(row[8]),
        row[9], row[10], row[11], row[12],
    )  # fmt: skip


def _ban_from_row(row: Row) -> Ban:
    return Ban(row[0], dt.datetime.fromisoformat(row[1]), dt.datetime.fromisoformat(row[2]),
               row[3], row[4])


def split_statements(script: str) -> list[str]:
    """Split a migration script into statements (triggers' inner `;` stay intact)."""
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())  # comments only, or an error SQLite will report
    return statements


def _connect_on_loop(path: Path) -> sqlite3.Connection:
    """The point-read connection: read-only, and never waiting for a lock (SqliteStore)."""
    db = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        db.execute("PRAGMA busy_timeout = 0")
        db.execute("PRAGMA query_only = ON")
    except BaseException:
        db.close()
        raise
    return db


async def _fetch(db: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> list[Row]:
    try:
        return list(await db.execute_fetchall(sql, params))
    except sqlite3.Error as error:  # full, damaged, I/O: store/errors.py's kinds
        raise_storage_failure(error)
        raise


async def _fetch_one(db: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> Row:
    rows = await _fetch(db, sql, params)
    return rows[0] if rows else None


def _new_message_row(mailbox_id: int, message: NewMessage, saved: dt.datetime, uid: int,
                     modseq: int) -> MessageRow:  # fmt: skip
    return MessageRow(mailbox_id, uid, modseq, message.blob_id, message.size,
                      _aware(message.internal_date), frozenset(message.flags), saved)


def _insert_params(row: MessageRow, meta: str) -> tuple[Any, ...]:
    return (row.mailbox_id, row.uid, row.modseq, row.blob_id, row.size,
            row.internal_date.isoformat(), _flags_text(row.flags), _utc_text(row.saved_date
            or _utc_now()), meta)  # fmt: skip


@dataclass(slots=True)
class _Write:
    """One write transaction: what to publish and which blobs to check after COMMIT."""

    db: aiosqlite.Connection
    kinds: dict[tuple[int, int], set[str]] = field(default_factory=lambda: defaultdict(set))
    blobs: set[str] = field(default_factory=set)

    def changed(self, account_id: int, mailbox_id: int, kind: str) -> None:
        self.kinds[(account_id, mailbox_id)].add(kind)

    def changes(self) -> list[Change]:
        return [Change(a, m, frozenset(kinds)) for (a, m), kinds in self.kinds.items()]


_SELECT_EXPUNGED = ("SELECT uid, blob_id FROM messages WHERE mailbox_id = ? AND uid IN"
                    " (SELECT value FROM json_each(?)) ORDER BY uid")


# Once a mailbox has had EXPUNGES_KEPT expunges since the last prune, its records older
# than the newest EXPUNGES_KEPT go (migration 0007); the subqueries run only then.
_PRUNE_EXPUNGED = (
    "UPDATE mailboxes SET expunges_since_prune = 0,"
    " pruned_uid = max(pruned_uid, coalesce((SELECT max(uid) FROM expunged"
    "  WHERE mailbox_id = :id AND modseq <= (SELECT modseq FROM expunged"
    "  WHERE mailbox_id = :id ORDER BY modseq DESC LIMIT 1 OFFSET :keep)), 0)),"
    " pruned_modseq = max(pruned_modseq, coalesce((SELECT modseq FROM expunged"
    "  WHERE mailbox_id = :id ORDER BY modseq DESC LIMIT 1 OFFSET :keep), 0))"
    " WHERE id = :id AND expunges_since_prune >= :keep"
)


def _expunge_statements(mailbox_id: int, found: str, modseq: int
                        ) -> list[tuple[str, Any]]:  # fmt: skip
    """Remove the messages whose UIDs `found` (JSON) lists, at MODSEQ `modseq` (the
    mailbox's highest_modseq is set by the caller)."""
    return [
        ("DELETE FROM messages WHERE mailbox_id = ? AND uid IN"
         " (SELECT value FROM json_each(?))", (mailbox_id, found)),
        # RFC 7162 §3.2.5.2: remembered so QRESYNC can report them as VANISHED.
        ("INSERT INTO expunged (mailbox_id, uid, modseq) SELECT ?, value, ? FROM json_each(?)",
         (mailbox_id, modseq, found)),
        ("UPDATE mailboxes SET expunges_since_prune = expunges_since_prune"
         " + json_array_length(?) WHERE id = ?", (found, mailbox_id)),
        (_PRUNE_EXPUNGED, {"id": mailbox_id, "keep": api.EXPUNGES_KEPT}),
        ("DELETE FROM expunged WHERE mailbox_id = ? AND modseq <="
         " (SELECT pruned_modseq FROM mailboxes WHERE id = ?)", (mailbox_id, mailbox_id)),
    ]


# -- group-commit jobs (store/sqlitebatch.py): plain functions on the batch connection ----
# Each statement costs the batch thread a GIL round trip, so the jobs use as few as they
# can: the MODSEQ comes from the one UPDATE of the mailbox row (RETURNING).


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


def _append_job(mailbox_id: int, message: NewMessage, saved: dt.datetime,
                inline_body: bytes | None, work: BatchWork) -> MessageRow:  # fmt: skip
    if inline_body is not None:  # the body's row, durable with the message's (sqliteblobs)
        work.db.execute(INSERT_INLINE_SQL, (message.blob_id, inline_body))
    # One UPDATE takes the UID and the MODSEQ (RFC 7162 §3.1: every append its own).
    row = work.db.execute(
        "UPDATE mailboxes SET uidnext = uidnext + 1, highest_modseq = highest_modseq + 1"
        " WHERE id = ? RETURNING account_id, uidnext - 1, highest_modseq", (mailbox_id,),
    ).fetchone()
    if row is None:
        raise NotFound(f"no mailbox with id {mailbox_id}")
    account_id, uid, modseq = row
    message_row = _new_message_row(mailbox_id, message, saved, uid, modseq)
    work.db.execute(_INSERT_MESSAGE, _insert_params(message_row, message.meta))
    work.changed(account_id, mailbox_id, "append", modseq)
    return message_row


def _insert_inline_job(blob_id: str, data: bytes, work: BatchWork) -> None:
    work.db.execute(INSERT_INLINE_SQL, (blob_id, data))


def _store_flags_job(mailbox_id: int, uids: Sequence[int], flags: frozenset[str],
                     mode: FlagMode, unchanged_since: int | None,
                     work: BatchWork) -> list[MessageRow]:  # fmt: skip
    db = work.db
    rows = db.execute(_SELECT_MESSAGES_IN, (mailbox_id, _uids_json(uids))).fetchall()
    flag_cache: dict[str, frozenset[str]] = {}
    updates: list[tuple[MessageRow, frozenset[str]]] = []
    for message in (_message_from_row(row, flag_cache) for row in rows):
        new_flags = _apply_flags(message.flags, flags, mode)
        # RFC 7162 §3.1.3: UNCHANGEDSINCE leaves messages modified after it alone.
        is_stale = unchanged_since is not None and message.modseq > unchanged_since
        if new_flags != message.flags and not is_stale:
            updates.append((message, new_flags))
    if not updates:
        if not rows:
            _check_mailbox(db, mailbox_id)  # nothing found: a missing mailbox is an error
        return []
    account_id, modseq = _next_modseq(db, mailbox_id)  # one MODSEQ for the whole STORE
    changed = [replace(message, flags=new_flags, modseq=modseq)
               for message, new_flags in updates]  # fmt: skip
    db.executemany("UPDATE messages SET flags = ?, modseq = ? WHERE mailbox_id = ? AND uid = ?",
                   [(_flags_text(m.flags), modseq, mailbox_id, m.uid) for m in changed])
    work.changed(account_id, mailbox_id, "flags", modseq)
    return changed


def _expunge_job(mailbox_id: int, uids: Sequence[int], work: BatchWork) -> Expunged:
    db = work.db
    rows = db.execute(_SELECT_EXPUNGED, (mailbox_id, _uids_json(uids))).fetchall()
    if not rows:
        _check_mailbox(db, mailbox_id)
        return Expunged([], 0)
    account_id, modseq = _next_modseq(db, mailbox_id)
    found = json.dumps([row[0] for row in rows])
    for sql, params in _expunge_statements(mailbox_id, found, modseq):
        db.execute(sql, params)
    work.blobs.update(row[1] for row in rows)  # unlinked after COMMIT when unreferenced
    work.changed(account_id, mailbox_id, "expunge", modseq)
    return Expunged([row[0] for row in rows], modseq)


class _SqliteMigrations:
    """`migrate.MigrationTarget` over the writer connection."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def applied_versions(self) -> set[int]:
        await _fetch(self._db, SCHEMA_VERSION_DDL)
        return {row[0] for row in await _fetch(self._db, "SELECT version FROM schema_version")}

    async def apply(self, migration: Migration) -> bool:
        db = self._db
        await _fetch(db, "BEGIN IMMEDIATE")
        try:
            # Re-checked under the write lock: another process may have just migrated.
            if await _fetch(db, "SELECT 1 FROM schema_version WHERE version = ?",
                            (migration.version,)):  # fmt: skip
                await _fetch(db, "ROLLBACK")
                return False
            for statement in split_statements(migration.sql):
                await _fetch(db, statement)
            await _fetch(
                db,
                "INSERT INTO schema_version (version, name, applied) VALUES (?, ?, ?)",
                (migration.version, migration.name, _utc_text(_utc_now())),
            )
            await _fetch(db, "COMMIT")
        except BaseException:
            if db.in_transaction:
                await _fetch(db, "ROLLBACK")
            raise
        return True


class _SqliteInstall:
    """`migrate.InstallTarget` over the writer connection."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def install_state(self) -> tuple[str | None, bool]:
        row = await _fetch_one(self._db, "SELECT id FROM install WHERE singleton = 1")
        (has_mail,) = await _fetch_one(
            self._db, "SELECT EXISTS (SELECT 1 FROM accounts) OR EXISTS (SELECT 1 FROM"
            " messages) OR EXISTS (SELECT 1 FROM queue)")
        return (row[0] if row else None), bool(has_mail)

    async def record_install_id(self, install_id: str) -> str:
        db = self._db
        await _fetch(db, "BEGIN IMMEDIATE")
        try:
            await _fetch(db, "INSERT OR IGNORE INTO install (singleton, id, created)"
                         " VALUES (1, ?, ?)", (install_id, _utc_text(_utc_now())))
            (recorded,) = await _fetch_one(db, "SELECT id FROM install WHERE singleton = 1")
            await _fetch(db, "COMMIT")
        except BaseException:
            if db.in_transaction:
                await _fetch(db, "ROLLBACK")
            raise
        return str(recorded)


_QUICK_CHECK_ERRORS = 3  # what the refusal quotes of quick_check's findings


class SqliteStore:
    """`Store` on one SQLite file; see the module docstring for the concurrency model.

    `data_dir`, when given, is the DATA_DIR whose install id the database must carry
    (store/migrate.py); app.py gives it, tests and the SQLite-to-PostgreSQL copy do not."""

    def __init__(self, path: Path, blobs: FileBlobStore, feed: ChangeFeed, *,
                 data_dir: Path | None = None) -> None:
        self._path = path
        self._data_dir = data_dir
        self.damage: StorageCorrupt | None = None  # set by a write that found it damaged
        self._blobs = blobs
        self._feed = feed
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._on_loop: sqlite3.Connection | None = None  # point reads, see module doc
        self._write_lock = asyncio.Lock()
        # Group commit for appends, flag changes and expunges (store/sqlitebatch.py).
        self._batch = BatchWriter(path, blobs, feed, self._write_lock,
                                  busy_timeout_ms=_BUSY_TIMEOUT_MS)

    # -- lifecycle -----------------------------------------------------------------------

    async def open(self) -> None:
        if self._data_dir is not None:  # before SQLite would create a blank file
            await asyncio.to_thread(refuse_missing_database, self._path, self._data_dir)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._blobs.prepare()
        try:
            await self._open_checked()
        except BaseException:
            await self.close()  # aiosqlite's threads would keep the process alive
            raise

    async def _open_checked(self) -> None:
        self._writer = await self._connect()
        await self._quick_check(self._writer)
        # WAL is a property of the file: set once, by the writer, before the schema.
        await _fetch(self._writer, "PRAGMA journal_mode = WAL")
        await migrate(_SqliteMigrations(self._writer), "sqlite")
        if self._data_dir is not None:
            await check_install(_SqliteInstall(self._writer), self._data_dir, str(self._path))
        self._reader = await self._connect()
        await _fetch(self._reader, "PRAGMA query_only = ON")
        self._on_loop = _connect_on_loop(self._path)
        await self._batch.open()  # after the migrations: it writes to the schema

    async def _quick_check(self, db: aiosqlite.Connection) -> None:
        """PRAGMA quick_check: every page's structure, without comparing indexes to
        their tables — O(size), about a second per GB; one line naming what it found."""
        try:  # not through _fetch: a refusal at start is one line, not a logged failure
            rows = await db.execute_fetchall(f"PRAGMA quick_check({_QUICK_CHECK_ERRORS})")
            findings = [str(row[0]) for row in rows]
        except sqlite3.DatabaseError as error:  # a damaged header: "file is not a database"
            if error.sqlite_errorcode & 0xFF not in (sqlite3.SQLITE_CORRUPT,
                                                     sqlite3.SQLITE_NOTADB):
                raise
            findings = [str(error)]
        if findings != ["ok"]:  # one line: a finding may span several ("*** in database…")
            lines = [line.strip() for finding in findings for line in finding.splitlines()]
            raise StorageCorrupt(self._damaged("; ".join(
                line for line in lines if line and not line.startswith("***"))))

    def _damaged(self, finding: str) -> str:
        return (f"refusing to start: the database {self._path} is damaged (quick_check: "
                f"{finding}); restore it from a backup, or salvage it with "
                f"`sqlite3 {self._path.name} .recover`")

    def _noted(self, error: BaseException) -> None:
        """Remember that a write found the database damaged (module doc)."""
        if isinstance(error, StorageCorrupt) and self.damage is None:
            self.damage = error

    async def _batched(self, job: Any, *, prepare: Any = None) -> Any:
        """A group-commit job (store/sqlitebatch.py), its failures noted."""
        try:
            return await self._batch.run(job, prepare=prepare)
        except Exception as error:
            self._noted(storage_failure(error) or error)
            raise

    async def _connect(self) -> aiosqlite.Connection:
        # isolation_level=None: sqlite3 must not open transactions behind our back; every
        # write says BEGIN IMMEDIATE itself (style-and-libs.md B, aiosqlite).
        db = await aiosqlite.connect(self._path, isolation_level=None)
        try:
            await _fetch(db, f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            await _fetch(db, "PRAGMA synchronous = FULL")  # acknowledged mail survives power loss
            await _fetch(db, "PRAGMA foreign_keys = ON")
        except BaseException:
            await db.close()
            raise
        return db

    async def close(self) -> None:
        await self._batch.close()  # writes already queued still get committed
        # aiosqlite ≥0.22 runs a non-daemon thread per connection: an unclosed one hangs exit.
        for db in (self._reader, self._writer):
            if db is not None:
                await db.close()
        self._reader = self._writer = None
        if self._on_loop is not None:
            self._on_loop.close()
            self._on_loop = None

    async def _read_few(self, sql: str, params: Sequence[Any]) -> list[Row]:
        """The rows of a read by a unique key (a handful at most), on the event loop
        when SQLite can answer at once (module doc)."""
        if self._on_loop is None:
            raise RuntimeError("SqliteStore used before open()")
        try:
            return self._on_loop.execute(sql, params).fetchall()
        except sqlite3.Error as error:
            # The low byte is the primary code (SQLITE_BUSY_RECOVERY is a SQLITE_BUSY).
            if error.sqlite_errorcode & 0xFF not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise_storage_failure(error)  # damaged, I/O: store/errors.py's kinds
                raise
            return await _fetch(self._read, sql, params)  # may wait: off the loop

    async def _point_read(self, sql: str, params: Sequence[Any]) -> Row:
        rows = await self._read_few(sql, params)
        return rows[0] if rows else None

    @property
    def _read(self) -> aiosqlite.Connection:
        if self._reader is None:
            raise RuntimeError("SqliteStore used before open()")
        return self._reader

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[_Write]:
        if self._writer is None:
            raise RuntimeError("SqliteStore used before open()")
        db = self._writer
        async with self._write_lock:
            await _fetch(db, "BEGIN IMMEDIATE")
            work = _Write(db)
            try:
                yield work
                for blob_id in filter(is_inline, work.blobs):  # in the transaction: module doc
                    await _fetch(db, DELETE_INLINE_IF_UNUSED_SQL, (blob_id,) * 3)
                await _fetch(db, "COMMIT")
            except BaseException as error:
                self._noted(error)
                if db.in_transaction:
                    await _fetch(db, "ROLLBACK")
                raise
            try:
                # Still under the lock: no writer can add a reference between check and unlink.
                for blob_id in itertools.filterfalse(is_inline, work.blobs):
                    await self._delete_file_if_unused(db, blob_id)
            finally:
                for change in work.changes():  # committed, so announced even if an unlink failed
                    self._feed.publish(change)

    # -- domains, accounts, aliases -------------------------------------------------------

    async def list_domains(self) -> list[str]:
        rows = await _fetch(self._read, "SELECT name FROM domains"
                            " UNION SELECT source_domain FROM aliases ORDER BY 1")  # fmt: skip
        return [row[0] for row in rows]

    async def is_local_domain(self, domain: str) -> bool:
        row = await self._point_read(
            "SELECT EXISTS (SELECT 1 FROM accounts a JOIN domains d ON d.id = a.domain_id"
            " WHERE d.name = ?) OR EXISTS (SELECT 1 FROM aliases WHERE source_domain = ?)",
            (domain.lower(), domain.lower()),
        )
        return bool(row[0])

    async def create_account(self, address: str, password_hash: str) -> Account:
        address = address.lower()
        async with self._write() as work:
            db = work.db
            await _fetch(db, "INSERT INTO domains (name) VALUES (?) ON CONFLICT (name) DO NOTHING",
                         (_domain_of(address),))  # fmt: skip
            if await _fetch(db, "SELECT 1 FROM accounts WHERE address = ?", (address,)):
                raise AlreadyExists(f"account {address} already exists")
            row = await _fetch_one(
                db,
                "INSERT INTO accounts (address, domain_id, password_hash)"
                " SELECT ?, id, ? FROM domains WHERE name = ? RETURNING id",
                (address, password_hash, _domain_of(address)),
            )
            for name, special_use in DEFAULT_MAILBOXES:
                await self._insert_mailbox(work, row[0], name, special_use)
                await self._subscribe(db, row[0], name, True)
        return Account(row[0], address, password_hash)

    async def get_account(self, address: str) -> Account | None:
        row = await self._point_read("SELECT id, address, password_hash FROM accounts"
                                     " WHERE address = ?", (address.lower(),))  # fmt: skip
        return Account(*row) if row else None

    async def get_account_by_id(self, account_id: int) -> Account | None:
        row = await self._point_read("SELECT id, address, password_hash FROM accounts"
                                     " WHERE id = ?", (account_id,))  # fmt: skip
        return Account(*row) if row else None

    async def set_password(self, address: str, password_hash: str) -> None:
        async with self._write() as work:
            if not await _fetch(work.db, "UPDATE accounts SET password_hash = ?"
                                " WHERE address = ? RETURNING id",
                                (password_hash, address.lower())):  # fmt: skip
                raise NotFound(f"no account {address}")

    async def delete_account(self, address: str) -> None:
        # Aliases pointing at the account stay: whether to drop them is the CLI's decision.
        async with self._write() as work:
            db = work.db
            row = await _fetch_one(db, "SELECT id, domain_id FROM accounts WHERE address = ?",
                                   (address.lower(),))  # fmt: skip
            if row is None:
                raise NotFound(f"no account {address}")
            account_id, domain_id = row
            for (mailbox_id,) in await _fetch(db, "SELECT id FROM mailboxes WHERE account_id = ?",
                                              (account_id,)):  # fmt: skip
                work.changed(account_id, mailbox_id, "mailbox")
            work.blobs.update(r[0] for r in await _fetch(
                db, "SELECT DISTINCT m.blob_id FROM messages m JOIN mailboxes b"
                " ON b.id = m.mailbox_id WHERE b.account_id = ?", (account_id,)))  # fmt: skip
            # ON DELETE CASCADE removes mailboxes, messages, expunge records, subscriptions.
            await _fetch(db, "DELETE FROM accounts WHERE id = ?", (account_id,))
            await _fetch(db, "DELETE FROM domains WHERE id = ? AND NOT EXISTS"
                         " (SELECT 1 FROM accounts WHERE domain_id = ?)",
                         (domain_id, domain_id))  # fmt: skip

    async def list_accounts(self) -> list[AccountSummary]:
        rows = await _fetch(
            self._read,
            "SELECT a.address, COUNT(m.uid), COALESCE(SUM(m.size), 0) FROM accounts a"
            " LEFT JOIN mailboxes b ON b.account_id = a.id"
            " LEFT JOIN messages m ON m.mailbox_id = b.id"
            " GROUP BY a.id, a.address ORDER BY a.address",
        )
        return [AccountSummary(*row) for row in rows]

    async def count_accounts(self) -> int:
        row = await _fetch_one(self._read, "SELECT COUNT(*) FROM accounts")
        return int(row[0])

    async def add_alias(self, source: str, target: str) -> None:
        source, target = source.lower(), target.lower()
        async with self._write() as work:
            try:
                await _fetch(work.db, "INSERT INTO aliases (source, source_domain, target)"
                             " VALUES (?, ?, ?)", (source, _domain_of(source), target))  # fmt: skip
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"alias {source} -> {target} already exists") from None

    async def delete_alias(self, source: str, target: str | None = None) -> int:
        async with self._write() as work:
            if target is None:
                rows = await _fetch(work.db, "DELETE FROM aliases WHERE source = ? RETURNING id",
                                    (source.lower(),))  # fmt: skip
            else:
                rows = await _fetch(work.db, "DELETE FROM aliases WHERE source = ?"
                                    " AND target = ? RETURNING id",
                                    (source.lower(), target.lower()))  # fmt: skip
        return len(rows)

    async def list_aliases(self) -> list[Alias]:
        rows = await _fetch(self._read, "SELECT source, target FROM aliases"
                            " ORDER BY source, target")  # fmt: skip
        return [Alias(*row) for row in rows]

    async def alias_targets(self, source: str) -> list[str]:
        rows = await self._read_few("SELECT target FROM aliases WHERE source = ? ORDER BY id",
                                    (source.lower(),))  # fmt: skip
        return [row[0] for row in rows]

    # -- mailboxes ------------------------------------------------------------------------

    async def list_mailboxes(self, account_id: int) -> list[Mailbox]:
        rows = await _fetch(self._read, _MAILBOX_SELECT + " WHERE b.account_id = ?"
                            " ORDER BY b.name <> 'INBOX', b.name", (account_id,))  # fmt: skip
        return [_mailbox_from_row(row) for row in rows]

    async def get_mailbox(self, account_id: int, name: str) -> Mailbox | None:
        row = await self._point_read(_MAILBOX_SELECT + " WHERE b.account_id = ?"
                                     " AND b.name = ?",
                                     (account_id, normalise_mailbox_name(name)))  # fmt: skip
        return _mailbox_from_row(row) if row else None

    async def get_mailbox_by_id(self, mailbox_id: int) -> Mailbox | None:
        row = await self._point_read(_MAILBOX_SELECT + " WHERE b.id = ?", (mailbox_id,))
        return _mailbox_from_row(row) if row else None

    async def _mailbox_on(self, db: aiosqlite.Connection, mailbox_id: int) -> Mailbox | None:
        row = await _fetch_one(db, _MAILBOX_SELECT + " WHERE b.id = ?", (mailbox_id,))
        return _mailbox_from_row(row) if row else None

    async def _existing_mailbox(self, db: aiosqlite.Connection, mailbox_id: int) -> Mailbox:
        mailbox = await self._mailbox_on(db, mailbox_id)
        if mailbox is None:
            raise NotFound(f"no mailbox with id {mailbox_id}")
        return mailbox

    async def create_mailbox(
        self, account_id: int, name: str, special_use: SpecialUse | None = None
    ) -> Mailbox:
        async with self._write() as work:
            mailbox_id = await self._insert_mailbox(work, account_id, name, special_use)
            mailbox = await self._existing_mailbox(work.db, mailbox_id)
        return mailbox

    async def _insert_mailbox(
        self, work: _Write, account_id: int, name: str, special_use: SpecialUse | None
    ) -> int:
        name = normalise_mailbox_name(name)
        db = work.db
        if await _fetch(db, "SELECT 1 FROM mailboxes WHERE account_id = ? AND name = ?",
                        (account_id, name)):  # fmt: skip
            raise AlreadyExists(f"mailbox {name} already exists")
        try:
            row = await _fetch_one(
                db,
                "INSERT INTO mailboxes (account_id, name, uidvalidity, special_use)"
                " VALUES (?, ?, ?, ?) RETURNING id",
                (account_id, name, await self._next_uidvalidity(db), special_use),
            )
        except sqlite3.IntegrityError:  # the account's foreign key: nothing else can fail
            raise NotFound(f"no account with id {account_id}") from None
        work.changed(account_id, row[0], "mailbox")
        return int(row[0])

    async def _next_uidvalidity(self, db: aiosqlite.Connection) -> int:
        # RFC 9051 §2.3.1.1: a name must never get a UIDVALIDITY it had before. One global
        # counter, seeded from the clock, also survives the database being re-created.
        row = await _fetch_one(db, "SELECT value FROM counters WHERE name = 'uidvalidity'")
        value = max((row[0] if row else 0) + 1, int(time.time()))
        await _fetch(db, "INSERT INTO counters (name, value) VALUES ('uidvalidity', ?)"
                     " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                     (value,))  # fmt: skip
        return value

    async def delete_mailbox(self, mailbox_id: int) -> None:
        async with self._write() as work:
            mailbox = await self._existing_mailbox(work.db, mailbox_id)
            if mailbox.name == INBOX:
                # RFC 9051 §6.3.4: it is an error to attempt to delete INBOX.
                raise Refused("INBOX cannot be deleted", code="CANNOT")
            work.blobs.update(r[0] for r in await _fetch(
                work.db, "SELECT DISTINCT blob_id FROM messages WHERE mailbox_id = ?",
                (mailbox_id,)))  # fmt: skip
            await _fetch(work.db, "DELETE FROM mailboxes WHERE id = ?", (mailbox_id,))
            work.changed(mailbox.account_id, mailbox_id, "mailbox")

    async def rename_mailbox(self, mailbox_id: int, new_name: str) -> None:
        new_name = normalise_mailbox_name(new_name)
        async with self._write() as work:
            mailbox = await self._existing_mailbox(work.db, mailbox_id)
            if mailbox.name == INBOX:
                await self._rename_inbox(work, mailbox, new_name)
            else:
                await self._rename_subtree(work, mailbox, new_name)

    async def _rename_subtree(self, work: _Write, mailbox: Mailbox, new_name: str) -> None:
        """Rename a mailbox and its inferiors ("a/b" goes along with "a"), subscriptions too."""
        if new_name == mailbox.name:
            raise AlreadyExists(f"mailbox {new_name} already exists")
        if new_name.startswith(mailbox.name + SEPARATOR):
            raise Refused(f"cannot rename {mailbox.name} to {new_name}", code="CANNOT")
        rows = await _fetch(work.db, "SELECT id, name FROM mailboxes WHERE account_id = ?",
                            (mailbox.account_id,))  # fmt: skip
        prefix = mailbox.name + SEPARATOR
        moving = {mid: name for mid, name in rows if mid == mailbox.id or name.startswith(prefix)}
        renames = [(mid, old, new_name + old[len(mailbox.name) :]) for mid, old in moving.items()]
        staying = {row[1] for row in rows if row[0] not in moving}
        if clash := next((new for _, _, new in renames if new in staying), None):
            raise AlreadyExists(f"mailbox {clash} already exists")
        # Two passes: a new name may equal another moving mailbox's old name ("x/a" → "x").
        db = work.db
        await db.executemany("UPDATE mailboxes SET name = ? WHERE id = ?",
                             [(f"\x00{mid}", mid) for mid, _, _ in renames])  # fmt: skip
        await db.executemany("UPDATE mailboxes SET name = ? WHERE id = ?",
                             [(new, mid) for mid, _, new in renames])  # fmt: skip
        subscribed = {
            r[0]
            for r in await _fetch(
                db, "SELECT name FROM subscriptions WHERE account_id = ?", (mailbox.account_id,)
            )
        }
        for mid, old, new in renames:
            if old in subscribed:
                await self._subscribe(db, mailbox.account_id, old, False)
                await self._subscribe(db, mailbox.account_id, new, True)
            work.changed(mailbox.account_id, mid, "mailbox")

    async def _rename_inbox(self, work: _Write, inbox: Mailbox, new_name: str) -> None:
        """RFC 9051 §6.3.9: messages move to a new mailbox; INBOX stays, empty."""
        db = work.db
        new_id = await self._insert_mailbox(work, inbox.account_id, new_name, None)
        # The moved messages keep their UIDs, so the new mailbox continues INBOX's counters
        # (under its own fresh UIDVALIDITY); INBOX sees them expunged.
        modseq = inbox.highest_modseq + 1
        await _fetch(db, "INSERT INTO expunged (mailbox_id, uid, modseq)"
                     " SELECT mailbox_id, uid, ? FROM messages WHERE mailbox_id = ?",
                     (modseq, inbox.id))  # fmt: skip
        await _fetch(db, "UPDATE messages SET mailbox_id = ? WHERE mailbox_id = ?",
                     (new_id, inbox.id))  # fmt: skip
        await _fetch(db, "UPDATE mailboxes SET uidnext = ?, highest_modseq = ? WHERE id = ?",
                     (inbox.uidnext, modseq, new_id))  # fmt: skip
        await _fetch(db, "UPDATE mailboxes SET highest_modseq = ? WHERE id = ?",
                     (modseq, inbox.id))  # fmt: skip
        work.changed(inbox.account_id, inbox.id, "expunge")

    async def set_subscribed(self, account_id: int, name: str, subscribed: bool) -> None:
        async with self._write() as work:
            await self._subscribe(work.db, account_id, normalise_mailbox_name(name), subscribed)

    async def _subscribe(
        self, db: aiosqlite.Connection, account_id: int, name: str, subscribed: bool
    ) -> None:
        if subscribed:
            await _fetch(db, "INSERT INTO subscriptions (account_id, name) VALUES (?, ?)"
                         " ON CONFLICT DO NOTHING", (account_id, name))  # fmt: skip
        else:
            await _fetch(db, "DELETE FROM subscriptions WHERE account_id = ? AND name = ?",
                         (account_id, name))  # fmt: skip

    async def list_subscriptions(self, account_id: int) -> list[str]:
        rows = await _fetch(self._read, "SELECT name FROM subscriptions WHERE account_id = ?"
                            " ORDER BY name", (account_id,))  # fmt: skip
        return [row[0] for row in rows]

    async def mailbox_counts(self, mailbox_id: int) -> MailboxCounts:
        row = await _fetch_one(
            self._read,
            "SELECT COUNT(*), COALESCE(SUM(instr(' ' || flags || ' ', ' \\Seen ') = 0), 0),"
            " COALESCE(SUM(size), 0) FROM messages WHERE mailbox_id = ?",
            (mailbox_id,),
        )
        return MailboxCounts(*row)

    async def mailbox_usage(self, mailbox_id: int) -> MailboxUsage:
        # Counters kept by triggers (migration 0008); the account's mailboxes come from the
        # (account_id, name) index: one point read, on the loop like the mailbox row.
        row = await self._point_read(_SELECT_USAGE, (mailbox_id,))
        if row is None:
            raise NotFound(f"no mailbox with id {mailbox_id}")
        return MailboxUsage(*row)

    async def mailbox_keywords(self, mailbox_id: int) -> frozenset[str]:
        # The distinct flag values, from the covering index messages_flags (migration 0004).
        rows = await _fetch(self._read, "SELECT DISTINCT flags FROM messages"
                            " WHERE mailbox_id = ?", (mailbox_id,))  # fmt: skip
        return keywords_of(row[0] for row in rows)

    # -- messages -------------------------------------------------------------------------

    async def append_message(self, mailbox_id: int, message: NewMessage, *,
                             body: bytes | None = None) -> MessageRow:
        # Group commit: concurrent appends (10 SMTP sessions, IMAP APPENDs) share one
        # transaction and one WAL fsync with other sessions' writes. Each caller still
        # returns only after the COMMIT holding its row, so nothing is acknowledged before
        # it is durable. A cancelled caller's row may still be committed with its batch
        # (the sender then retries: a duplicate, never a loss). A `body` goes into the
        # same transaction when its id is inline (store/sqliteblobs.py); otherwise the
        # batch thread writes and fsyncs its file just before the transaction.
        inline_body, prepare = None, None
        if body is not None and is_inline(message.blob_id):
            inline_body = body
        elif body is not None:
            prepare = partial(self._blobs.write_now, message.blob_id, body)
        job = partial(_append_job, mailbox_id, message, _utc_now(), inline_body)
        return await self._batched(job, prepare=prepare)  # type: ignore[no-any-return]

    async def list_messages(self, mailbox_id: int, *, changed_since: int = 0) -> list[MessageRow]:
        sql = _SELECT_MESSAGES
        params: tuple[int, ...] = (mailbox_id,)
        if changed_since > 0:  # without it, the primary key alone serves the UID order
            sql += " AND modseq > ?"
            params += (changed_since,)
        rows = await _fetch(self._read, sql + " ORDER BY uid", params)
        if len(rows) > _ROWS_BUILT_ON_LOOP:
            # ~2.5 µs a row: 100,000 rows would hold the event loop for a quarter second.
            return await asyncio.to_thread(_messages_from_rows, rows)
        return _messages_from_rows(rows)

    async def get_message(self, mailbox_id: int, uid: int) -> MessageRow | None:
        row = await _fetch_one(self._read, _SELECT_MESSAGES + " AND uid = ?", (mailbox_id, uid))
        return _message_from_row(row, {}) if row else None

    async def list_flag_columns(self, mailbox_id: int) -> FlagColumns:
        # Served from the covering index messages_flags (migration 0004): the table rows,
        # which carry each message's meta, are never read. Three strings instead of
        # 100,000 row tuples: a third less time on the read, parsed by C code (json.loads
        # of the numbers is faster than split + int).
        row = await _fetch_one(self._read, _SELECT_FLAG_COLUMNS, (mailbox_id,))
        if row is None or row[2] is None:
            return FlagColumns([], [], [])
        uids: list[int] = json.loads(row[0])
        modseqs: list[int] = json.loads(row[1])
        texts = row[2].split("\n")  # flags are atoms: never a newline (RFC 9051 §9)
        if uids != sorted(uids):  # group_concat's order is SQLite's choice: check it
            ordered = sorted(zip(uids, modseqs, texts, strict=True))
            uids, modseqs, texts = (list(column) for column in zip(*ordered, strict=True))
        return FlagColumns.from_lists(uids, modseqs, texts)

    async def select_summary(self, mailbox_id: int) -> SelectSummary:
        # Both parts are index-only scans (the primary key, messages_flags); one statement
        # is one read snapshot, so the UIDs and the flag groups agree.
        row = await _fetch_one(self._read, _SELECT_SUMMARY, (mailbox_id,))
        uids: list[int] = json.loads(row[0])
        if uids != sorted(uids):  # json_group_array's order is SQLite's choice: check it
            uids.sort()
        return SelectSummary.from_texts(uids, json.loads(row[1]), row[2])

    async def get_messages(self, mailbox_id: int, uids: Sequence[int]) -> list[MessageRow]:
        rows = await _fetch(self._read, _SELECT_MESSAGES + " AND uid IN (SELECT value FROM"
                            " json_each(?)) ORDER BY uid",
                            (mailbox_id, _uids_json(uids)))  # fmt: skip
        if len(rows) > _ROWS_BUILT_ON_LOOP:
            return await asyncio.to_thread(_messages_from_rows, rows)
        return _messages_from_rows(rows)

    async def get_meta(self, mailbox_id: int, uid: int) -> str:
        row = await _fetch_one(self._read, "SELECT meta FROM messages WHERE mailbox_id = ?"
                               " AND uid = ?", (mailbox_id, uid))  # fmt: skip
        if row is None:
            raise NotFound(f"no message {uid} in mailbox {mailbox_id}")
        return str(row[0])

    async def get_metas(self, mailbox_id: int, uids: Sequence[int]) -> dict[int, str]:
        rows = await _fetch(self._read, "SELECT uid, meta FROM messages WHERE mailbox_id = ?"
                            " AND uid IN (SELECT value FROM json_each(?))",
                            (mailbox_id, _uids_json(uids)))  # fmt: skip
        return {row[0]: str(row[1]) for row in rows}

    async def store_flags(
        self,
        mailbox_id: int,
        uids: Sequence[int],
        flags: frozenset[str],
        mode: FlagMode,
        *,
        unchanged_since: int | None = None,
    ) -> list[MessageRow]:
        return await self._batched(partial(_store_flags_job, mailbox_id, uids, flags, mode,
                                             unchanged_since))  # fmt: skip

    async def expunge(self, mailbox_id: int, uids: Sequence[int]) -> Expunged:
        return await self._batched(partial(_expunge_job, mailbox_id, uids))  # type: ignore[no-any-return]

    async def _expunge_on(self, work: _Write, mailbox_id: int, uids: Iterable[int]) -> list[int]:
        """MOVE's expunge, inside its own transaction on the aiosqlite writer (the same
        statements as `_expunge_job`)."""
        db = work.db
        mailbox = await self._existing_mailbox(db, mailbox_id)
        rows = await _fetch(db, _SELECT_EXPUNGED, (mailbox_id, _uids_json(uids)))
        if not rows:
            return []
        found = json.dumps([row[0] for row in rows])
        modseq = mailbox.highest_modseq + 1
        for sql, params in _expunge_statements(mailbox_id, found, modseq):
            await _fetch(db, sql, params)
        await _fetch(db, "UPDATE mailboxes SET highest_modseq = ? WHERE id = ?",
                     (modseq, mailbox_id))  # fmt: skip
        work.blobs.update(row[1] for row in rows)
        work.changed(mailbox.account_id, mailbox_id, "expunge")
        return [row[0] for row in rows]

    async def expunged_since(self, mailbox_id: int, modseq: int) -> list[int]:
        # One statement, one snapshot: the prune horizon and the records it left.
        rows = await _fetch(self._read, "SELECT b.pruned_modseq, b.pruned_uid, e.uid"
                            " FROM mailboxes b LEFT JOIN expunged e ON e.mailbox_id = b.id"
                            " AND e.modseq > ? WHERE b.id = ? ORDER BY e.uid",
                            (modseq, mailbox_id))  # fmt: skip
        uids, pruned_uid = recorded_expunges(rows, modseq)
        if not pruned_uid:
            return uids
        present = await _fetch(self._read, "SELECT uid FROM messages WHERE mailbox_id = ?"
                               " AND uid <= ?", (mailbox_id, pruned_uid))  # fmt: skip
        return with_forgotten(uids, pruned_uid, (row[0] for row in present))

    async def copy_messages(
        self, source_mailbox_id: int, uids: Sequence[int], target_mailbox_id: int
    ) -> CopyResult:
        async with self._write() as work:
            return await self._copy_on(work, source_mailbox_id, uids, target_mailbox_id)

    async def move_messages(
        self, source_mailbox_id: int, uids: Sequence[int], target_mailbox_id: int
    ) -> CopyResult:
        # RFC 6851 §3.3: copy then expunge, atomically (one transaction).
        async with self._write() as work:
            result = await self._copy_on(work, source_mailbox_id, uids, target_mailbox_id)
            await self._expunge_on(work, source_mailbox_id, result.source_uids)
        return result

    async def _copy_on(
        self, work: _Write, source_id: int, uids: Sequence[int], target_id: int
    ) -> CopyResult:
        db = work.db
        await self._existing_mailbox(db, source_id)
        target = await self._existing_mailbox(db, target_id)
        rows = await _fetch(db, "SELECT uid FROM messages WHERE mailbox_id = ? AND uid IN"
                            " (SELECT value FROM json_each(?)) ORDER BY uid",
                            (source_id, _uids_json(uids)))  # fmt: skip
        source_uids = tuple(row[0] for row in rows)
        if not source_uids:
            return CopyResult(target.uidvalidity, (), ())
        # RFC 4315 §3: target UIDs are assigned in source-UID order.
        target_uids = tuple(range(target.uidnext, target.uidnext + len(source_uids)))
        modseq, saved = target.highest_modseq + 1, _utc_text(_utc_now())
        await db.executemany(
            _COPY_MESSAGE,
            [(target_id, new, modseq, saved, source_id, old)
             for old, new in zip(source_uids, target_uids, strict=True)],
        )  # fmt: skip
        await _fetch(db, "UPDATE mailboxes SET uidnext = ?, highest_modseq = ? WHERE id = ?",
                     (target_uids[-1] + 1, modseq, target_id))  # fmt: skip
        work.changed(target.account_id, target_id, "append")
        return CopyResult(target.uidvalidity, source_uids, target_uids)

    # -- outbound queue -------------------------------------------------------------------

    async def enqueue(self, entries: Sequence[QueueEntry]) -> list[QueueEntry]:
        stored = []
        async with self._write() as work:
            for entry in entries:
                created = _aware(entry.created).astimezone(dt.UTC)
                next_attempt = _aware(entry.next_attempt).astimezone(dt.UTC)
                entry = replace(entry, created=created, next_attempt=next_attempt)
                row = await _fetch_one(
                    work.db,
                    _INSERT_QUEUE,
                    (entry.message_id, entry.sender, entry.recipient, entry.domain,
                     entry.blob_id, entry.size, _utc_text(entry.created),
                     _utc_text(entry.next_attempt), entry.attempts, entry.last_error,
                     entry.envid, entry.notify),
                )  # fmt: skip
                stored.append(replace(entry, id=row[0]))
        return stored

    async def due_queue_entries(self, now: dt.datetime, limit: int) -> list[QueueEntry]:
        rows = await _fetch(self._read, _SELECT_QUEUE + " WHERE next_attempt <= ?"
                            " ORDER BY next_attempt, id LIMIT ?",
                            (_utc_text(now), limit))  # fmt: skip
        return [_queue_from_row(row) for row in rows]

    async def claim_due_queue_entries(
        self, now: dt.datetime, limit: int, lease: dt.timedelta
    ) -> list[QueueEntry]:
        # Under the write lock (BEGIN IMMEDIATE): one writer, so select-then-update is atomic.
        async with self._write() as work:
            rows = await _fetch(work.db, _SELECT_QUEUE + " WHERE next_attempt <= ?"
                                " ORDER BY next_attempt, id LIMIT ?",
                                (_utc_text(now), limit))  # fmt: skip
            if rows:
                until = _utc_text(_aware(now) + lease)
                await _fetch(work.db, "UPDATE queue SET next_attempt = ?, leased_until = ?"
                             " WHERE id IN (SELECT value FROM json_each(?))",
                             (until, until, json.dumps([row[0] for row in rows])))  # fmt: skip
        return [_queue_from_row(row) for row in rows]

    async def renew_queue_leases(self, entry_ids: Sequence[int], held_until: dt.datetime,
                                 until: dt.datetime) -> list[int]:
        # leased_until is compared as text: both sides are _utc_text of the same instant.
        async with self._write() as work:
            rows = await _fetch(work.db, "UPDATE queue SET next_attempt = ?, leased_until = ?"
                                " WHERE id IN (SELECT value FROM json_each(?))"
                                " AND leased_until = ? RETURNING id",
                                (_utc_text(until), _utc_text(until), json.dumps(list(entry_ids)),
                                 _utc_text(held_until)))  # fmt: skip
        return sorted(row[0] for row in rows)

    async def list_queue(self) -> list[QueueEntry]:
        rows = await _fetch(self._read, _SELECT_QUEUE + " ORDER BY id")
        return [_queue_from_row(row) for row in rows]

    async def next_queue_attempt(self) -> dt.datetime | None:
        row = await _fetch_one(self._read, "SELECT min(next_attempt) FROM queue")
        return dt.datetime.fromisoformat(row[0]) if row and row[0] else None

    async def reschedule(self, entry_id: int, next_attempt: dt.datetime, last_error: str) -> None:
        # A row deleted meanwhile (`queue delete` during an attempt) is not an error.
        async with self._write() as work:
            await _fetch(work.db, "UPDATE queue SET next_attempt = ?, last_error = ?,"
                         " attempts = attempts + 1, leased_until = NULL WHERE id = ?",
                         (_utc_text(next_attempt), last_error, entry_id))  # fmt: skip

    async def finish_queue_entry(self, entry_id: int) -> None:
        async with self._write() as work:
            rows = await _fetch(work.db, "DELETE FROM queue WHERE id = ? RETURNING blob_id",
                                (entry_id,))  # fmt: skip
            work.blobs.update(row[0] for row in rows)

    async def flush_queue(self, now: dt.datetime) -> int:
        async with self._write() as work:
            # A lease in force means a worker is delivering the row right now.
            rows = await _fetch(work.db, "UPDATE queue SET next_attempt = ?,"
                                " leased_until = NULL WHERE leased_until IS NULL"
                                " OR leased_until <= ? RETURNING id",
                                (_utc_text(now), _utc_text(now)))  # fmt: skip
        return len(rows)

    async def delete_queue_message(self, message_id: str) -> int:
        async with self._write() as work:
            rows = await _fetch(work.db, "DELETE FROM queue WHERE message_id = ?"
                                " RETURNING blob_id", (message_id,))  # fmt: skip
            work.blobs.update(row[0] for row in rows)
        return len(rows)

    # -- importers (issue 9, accounts/dms_import.py) -------------------------------------

    async def set_mailbox_uids(self, mailbox_id: int, uidvalidity: int, uidnext: int) -> Mailbox:
        async with self._write() as work:
            db = work.db
            mailbox = await self._existing_mailbox(db, mailbox_id)
            if uidvalidity == mailbox.uidvalidity:
                # The same UID space: UIDNEXT may only rise (RFC 9051 §2.3.1.1: never reuse).
                if uidnext <= mailbox.uidnext:
                    return mailbox
                await _fetch(db, "UPDATE mailboxes SET uidnext = ? WHERE id = ?",
                             (uidnext, mailbox_id))  # fmt: skip
                return replace(mailbox, uidnext=uidnext)
            if await _fetch(db, "SELECT 1 FROM messages WHERE mailbox_id = ? LIMIT 1",
                            (mailbox_id,)):  # fmt: skip
                raise Refused(f"mailbox {mailbox.name} holds messages; its UIDVALIDITY cannot"
                              " change", code="CANNOT")
            # A new UID space: the old one's expunge records mean nothing in it, and the
            # global counter moves past the value so no other mailbox is handed it.
            await _fetch(db, "DELETE FROM expunged WHERE mailbox_id = ?", (mailbox_id,))
            await _fetch(db, "INSERT INTO counters (name, value) VALUES ('uidvalidity', ?)"
                         " ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value)",
                         (uidvalidity,))  # fmt: skip
            await _fetch(db, "UPDATE mailboxes SET uidvalidity = ?, uidnext = ?,"
                         " highest_modseq = highest_modseq + 1 WHERE id = ?",
                         (uidvalidity, max(uidnext, 1), mailbox_id))  # fmt: skip
            work.changed(mailbox.account_id, mailbox_id, "mailbox")
            return await self._existing_mailbox(db, mailbox_id)

    async def import_message(
        self, mailbox_id: int, message: NewMessage, *, source_key: str, uid: int | None = None
    ) -> MessageRow | None:
        saved = _utc_now()
        async with self._write() as work:
            db = work.db
            if await _fetch(db, "SELECT 1 FROM imported_keys WHERE mailbox_id = ?"
                            " AND source_key = ?", (mailbox_id, source_key)):  # fmt: skip
                return None
            mailbox = await self._existing_mailbox(db, mailbox_id)
            # RFC 9051 §2.3.1.1: UIDs only ascend, so a wanted UID below UIDNEXT cannot be had.
            new_uid = uid if uid is not None and uid >= mailbox.uidnext else mailbox.uidnext
            modseq = mailbox.highest_modseq + 1
            await _fetch(db, "UPDATE mailboxes SET uidnext = ?, highest_modseq = ? WHERE id = ?",
                         (new_uid + 1, modseq, mailbox_id))  # fmt: skip
            internal_date = _aware(message.internal_date)
            await _fetch(
                db,
                _INSERT_MESSAGE,
                (mailbox_id, new_uid, modseq, message.blob_id, message.size,
                 internal_date.isoformat(), _flags_text(message.flags), _utc_text(saved),
                 message.meta),
            )  # fmt: skip
            await _fetch(db, "INSERT INTO imported_keys (mailbox_id, source_key)"
                         " VALUES (?, ?)", (mailbox_id, source_key))  # fmt: skip
            work.changed(mailbox.account_id, mailbox_id, "append")
        return MessageRow(mailbox_id, new_uid, modseq, message.blob_id, message.size,
                          internal_date, frozenset(message.flags), saved)  # fmt: skip

    async def imported_keys(self, mailbox_id: int) -> set[str]:
        rows = await _fetch(self._read, "SELECT source_key FROM imported_keys"
                            " WHERE mailbox_id = ?", (mailbox_id,))  # fmt: skip
        return {row[0] for row in rows}

    # -- bans (issue 7) -------------------------------------------------------------------

    async def add_ban(self, ban: Ban) -> None:
        async with self._write() as work:
            await _fetch(work.db, "DELETE FROM bans WHERE expires <= ?",
                         (_utc_text(ban.created),))  # fmt: skip
            await _fetch(
                work.db,
                "INSERT INTO bans (address, created, expires, failures, reason)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (address) DO UPDATE SET"
                " created = excluded.created, expires = excluded.expires,"
                " failures = excluded.failures, reason = excluded.reason",
                (ban.address, _utc_text(ban.created), _utc_text(ban.expires), ban.failures,
                 ban.reason),
            )  # fmt: skip

    async def get_ban(self, address: str, now: dt.datetime) -> Ban | None:
        row = await self._point_read(_SELECT_BANS + " WHERE address = ? AND expires > ?",
                                     (address, _utc_text(now)))  # fmt: skip
        return _ban_from_row(row) if row else None

    async def list_bans(self, now: dt.datetime) -> list[Ban]:
        rows = await _fetch(self._read, _SELECT_BANS + " WHERE expires > ?"
                            " ORDER BY expires, address", (_utc_text(now),))  # fmt: skip
        return [_ban_from_row(row) for row in rows]

    async def delete_ban(self, address: str) -> int:
        async with self._write() as work:
            rows = await _fetch(work.db, "DELETE FROM bans WHERE address = ? RETURNING address",
                                (address,))  # fmt: skip
        return len(rows)

    # -- failed logins (issue 10) ---------------------------------------------------------

    async def record_auth_failure(self, address: str, at: dt.datetime,
                                  since: dt.datetime) -> int:
        # One writer (BEGIN IMMEDIATE): the insert and the count see every other failure.
        async with self._write() as work:
            await _fetch(work.db, "DELETE FROM auth_failures WHERE at < ?", (_utc_text(since),))
            await _fetch(work.db, "INSERT INTO auth_failures (address, at) VALUES (?, ?)",
                         (address, _utc_text(at)))  # fmt: skip
            row = await _fetch_one(work.db, "SELECT count(*) FROM auth_failures"
                                   " WHERE address = ? AND at >= ?",
                                   (address, _utc_text(since)))  # fmt: skip
        return int(row[0])

    async def count_auth_failures(self, address: str, since: dt.datetime) -> int:
        row = await _fetch_one(self._read, "SELECT count(*) FROM auth_failures"
                               " WHERE address = ? AND at >= ?",
                               (address, _utc_text(since)))  # fmt: skip
        return int(row[0])

    async def clear_auth_failures(self, address: str) -> int:
        async with self._write() as work:
            rows = await _fetch(work.db, "DELETE FROM auth_failures WHERE address = ?"
                                " RETURNING address", (address,))  # fmt: skip
        return len(rows)

    # -- blobs ----------------------------------------------------------------------------

    async def release_blob_if_unused(self, blob_id: str) -> None:
        async with self._write() as work:
            work.blobs.add(blob_id)  # deleted by _write when nothing refers to it

    async def _delete_file_if_unused(self, db: aiosqlite.Connection, blob_id: str) -> None:
        row = await _fetch_one(db, BLOB_IN_USE_SQL, (blob_id, blob_id))
        if not row[0]:
            await self._blobs.delete(blob_id)

    # The rows of small bodies (store/sqliteblobs.py).
    async def put_inline_blob(self, blob_id: str, data: bytes) -> None:
        await self._batched(partial(_insert_inline_job, blob_id, data))

    async def read_inline_blobs(self, blob_ids: list[str]) -> dict[str, bytes]:
        if len(blob_ids) == 1:  # one body of at most INLINE_LIMIT bytes: on the loop
            rows = await self._read_few("SELECT id, data FROM blob_data WHERE id = ?", blob_ids)
            return dict(rows)
        if not blob_ids:
            return {}
        return dict(await _fetch(self._read, "SELECT id, data FROM blob_data WHERE id IN"
                                 " (SELECT value FROM json_each(?))", (json.dumps(blob_ids),)))

    async def delete_inline_blob(self, blob_id: str) -> None:
        async with self._write() as work:
            await _fetch(work.db, "DELETE FROM blob_data WHERE id = ?", (blob_id,))


def sqlite_store(path: Path, blob_root: Path, feed: ChangeFeed, *,
                 data_dir: Path | None = None) -> tuple[SqliteStore, SqliteBlobStore]:
    """The SQLite store on `path` and the blob store of its bodies (small ones in the
    database, larger ones as files under `blob_root`); open the store before use.
    `data_dir`: check the database against DATA_DIR's install id (SqliteStore)."""
    files = FileBlobStore(blob_root)
    store = SqliteStore(path, files, feed, data_dir=data_dir)
    return store, SqliteBlobStore(files, store)
