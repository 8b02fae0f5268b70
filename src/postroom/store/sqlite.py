"""The SQLite Store backend (aiosqlite), the default for a single-node install.

Owns the SQLite database file: its pragmas, its schema (through `store/migrate.py`), its
connections and transactions, and the queries only SQLite runs (the group-commit jobs,
the JSON-aggregate SELECT summaries). The SQL it shares with PostgreSQL is written once
in `store/sql/`, run here through `_Write` (a `sql.base.Tx`) and the SQLite dialect.
Nothing else in postroom imports aiosqlite (ARCHITECTURE.md rule 2).

Invariants beyond those in `store/api.py`:
- Two writing connections (aiosqlite's, and the group-commit one below); every write
  runs in `BEGIN IMMEDIATE … COMMIT` under one asyncio.Lock, so within this process
  writes are serialised and UID/MODSEQ allocation (read-increment-write on the mailbox
  row) cannot race. Reads go through a third connection; WAL lets them run beside the
  writers and see every committed write.
- Point reads (one row by a unique key: account, mailbox, domain, alias, ban — what
  every RCPT and LOGIN asks) run on the event loop on a fourth, plain sqlite3
  connection (`_point_rows`): answered from SQLite's cache they take microseconds, while
  a hop to a reader thread and back costs ~0.2 ms of CPU in futexes and GIL handoffs
  (issue 8: five such hops per received message). Small reads of IMAP commands go the
  same way (issue 22): an account's mailbox and subscription lists (LIST, LSUB), a
  mailbox's counts (STATUS), the few messages a FETCH names, a refresh's changes. That
  connection never waits and never runs long (store/sqliteloop.py): with busy_timeout
  0, a read that finds the WAL index locked (recovery, a checkpoint restarting the log)
  goes to the reader thread instead, and so does one that SQLite's progress handler
  interrupts after ON_LOOP_STEPS steps (a very large mailbox), which is then
  remembered and sent to the reader thread straight away.
- synchronous=FULL: a commit is on disk before the method returns (rule 10); flag-only
  changes (store_flags) are committed in the WAL with synchronous=NORMAL (decision 0052).
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
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import aiosqlite

from postroom.store.api import (
    Expunged,
    FlagColumns,
    FlagMode,
    MessageRow,
    NewMessage,
    QueueEntry,
    SelectSummary,
)
from postroom.store.blobs import FileBlobStore
from postroom.store.changes import ChangeFeed, WriteEffects
from postroom.store.errors import (
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
from postroom.store.sql.accountstate import AccountStateSql
from postroom.store.sql.apitokens import ApiTokenSql
from postroom.store.sql.base import Params, Tx
from postroom.store.sql.credentials import CredentialSql
from postroom.store.sql.dialect import SQLITE, utc_text
from postroom.store.sql.directory import DirectorySql
from postroom.store.sql.dmarcreports import DmarcReportSql
from postroom.store.sql.fulltext import FulltextSql
from postroom.store.sql.greylist import GreylistSql
from postroom.store.sql.guard import GuardSql
from postroom.store.sql.jmapidentities import JmapIdentitySql
from postroom.store.sql.jmapstate import JmapStateSql
from postroom.store.sql.jmapthreads import JmapThreadSql
from postroom.store.sql.jmapuploads import JmapUploadSql
from postroom.store.sql.junk import JunkSql
from postroom.store.sql.mailboxes import MailboxSql, Rename
from postroom.store.sql.messages import MessageSql
from postroom.store.sql.metadata import MetadataSql
from postroom.store.sql.mtasts import MtaStsSql
from postroom.store.sql.queue import SELECT_DUE, QueueSql
from postroom.store.sql.quota import QuotaSql
from postroom.store.sql.rows import (
    INSTALL_ID,
    Row,
    queue_from_row,
    read_install_state,
    utc_now,
)
from postroom.store.sql.sieve import SieveSql
from postroom.store.sql.tls import TlsSql
from postroom.store.sql.tlsreports import TlsReportSql
from postroom.store.sql.web import WebSql
from postroom.store.sqlitebatch import LOOP_MAX_MESSAGES, BatchWriter
from postroom.store.sqliteblobs import (
    BLOB_IN_USE_SQL,
    DELETE_INLINE_IF_UNUSED_SQL,
    SqliteBlobStore,
    is_inline,
)
from postroom.store.sqlitejobs import (
    append_job,
    append_many_job,
    expunge_job,
    finish_queue_job,
    insert_inline_job,
    store_flags_job,
    write_blobs_now,
)
from postroom.store.sqliteloop import (
    INLINE_ON_LOOP,
    OFF_THE_LOOP,
    LongReads,
    connect_on_loop,
)

_BUSY_TIMEOUT_MS = 10_000

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
# RFC 4315 §3 COPY keeps flags and internal date; saved_date is the copy's own (RFC 8514).
_COPY_MESSAGE = (
    "INSERT INTO messages (mailbox_id, uid, modseq, blob_id, size, internal_date, flags,"
    " saved_date, meta) SELECT ?, ?, ?, blob_id, size, internal_date, flags, ?, meta"
    " FROM messages WHERE mailbox_id = ? AND uid = ?"
)
_LEASE = ("UPDATE queue SET next_attempt = ?, leased_until = ?"
          " WHERE id IN (SELECT value FROM json_each(?))")

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


async def _fetch(db: aiosqlite.Connection, sql: str, params: Params = ()) -> list[Row]:
    try:
        return list(await db.execute_fetchall(sql, params))
    except sqlite3.Error as error:  # full, damaged, I/O: store/errors.py's kinds
        raise_storage_failure(error)
        raise


async def _fetch_one(db: aiosqlite.Connection, sql: str, params: Params = ()) -> Row:
    rows = await _fetch(db, sql, params)
    return rows[0] if rows else None


@dataclass(slots=True, kw_only=True)
class _Write(WriteEffects):
    """One write transaction on the aiosqlite writer (`sql.base.Tx`)."""

    db: aiosqlite.Connection

    async def fetch(self, sql: str, params: Params = ()) -> list[Row]:
        return await _fetch(self.db, sql, params)

    async def fetch_one(self, sql: str, params: Params = ()) -> Row:
        return await _fetch_one(self.db, sql, params)

    async def execute_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self.db.executemany(sql, rows)


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
                (migration.version, migration.name, utc_text(utc_now())),
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
        return await read_install_state(partial(_fetch_one, self._db))

    async def record_install_id(self, install_id: str) -> str:
        db = self._db
        await _fetch(db, "BEGIN IMMEDIATE")
        try:
            await _fetch(db, "INSERT OR IGNORE INTO install (singleton, id, created)"
                         " VALUES (1, ?, ?)", (install_id, utc_text(utc_now())))
            (recorded,) = await _fetch_one(db, INSTALL_ID)
            await _fetch(db, "COMMIT")
        except BaseException:
            if db.in_transaction:
                await _fetch(db, "ROLLBACK")
            raise
        return str(recorded)


_QUICK_CHECK_ERRORS = 3  # what the refusal quotes of quick_check's findings


class SqliteStore(DirectorySql, MailboxSql, MessageSql, QueueSql, GuardSql,
                  MetadataSql, QuotaSql, GreylistSql, JunkSql, SieveSql, TlsSql, MtaStsSql,
                  TlsReportSql, DmarcReportSql, FulltextSql, AccountStateSql, WebSql,
                  CredentialSql, JmapStateSql, JmapUploadSql, ApiTokenSql, JmapThreadSql,
                  JmapIdentitySql):
    """`Store` on one SQLite file; see the module docstring for the concurrency model.
    The SQL it shares with PostgreSQL is in store/sql/.

    `data_dir`, when given, is the DATA_DIR whose install id the database must carry
    (store/migrate.py); app.py gives it, tests and the SQLite-to-PostgreSQL copy do not."""

    dialect = SQLITE

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
        self._long_reads = LongReads()  # what ran out of the on-loop budget
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
        self._on_loop = connect_on_loop(self._path)
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

    async def _batched(self, job: Any, *, prepare: Any = None, durable: bool = True,
                       small: bool = False) -> Any:
        """A group-commit job (store/sqlitebatch.py), its failures noted."""
        try:
            return await self._batch.run(job, prepare=prepare, durable=durable, small=small)
        except Exception as error:
            self._noted(storage_failure(error) or error)
            raise

    async def _connect(self) -> aiosqlite.Connection:
        # isolation_level=None: sqlite3 must not open transactions behind our back; every
        # write says BEGIN IMMEDIATE itself (style-and-libs.md B, aiosqlite).
        db = await aiosqlite.connect(self._path, isolation_level=None)
        try:
            for pragma in (f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}",
                           "PRAGMA synchronous = FULL",  # acknowledged mail survives power loss
                           "PRAGMA foreign_keys = ON"):  # fmt: skip
                await self._opening_pragma(db, pragma)
        except BaseException:
            await db.close()
            raise
        return db

    async def _opening_pragma(self, db: aiosqlite.Connection, pragma: str) -> None:
        """Not through _fetch: damage found while opening (a schema spread over damaged
        pages fails the first statement) is the one-line refusal, as quick_check's."""
        try:
            await db.execute_fetchall(pragma)
        except sqlite3.DatabaseError as error:
            if error.sqlite_errorcode & 0xFF not in (sqlite3.SQLITE_CORRUPT,
                                                     sqlite3.SQLITE_NOTADB):
                raise
            raise StorageCorrupt(self._damaged(str(error))) from None

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

    async def _point_rows(self, sql: str, params: Sequence[Any]) -> list[Row]:
        """The rows of a small read (by a unique key, or an account's mailboxes), on the
        event loop when SQLite can answer at once and within ON_LOOP_STEPS (module doc)."""
        if self._on_loop is None:
            raise RuntimeError("SqliteStore used before open()")
        if (sql, params) in self._long_reads:
            return await _fetch(self._read, sql, params)  # it ran out of steps before
        try:
            return self._on_loop.execute(sql, params).fetchall()
        except sqlite3.Error as error:
            # The low byte is the primary code (SQLITE_BUSY_RECOVERY is a SQLITE_BUSY).
            code = error.sqlite_errorcode & 0xFF
            if code not in OFF_THE_LOOP:
                raise_storage_failure(error)  # damaged, I/O: store/errors.py's kinds
                raise
            if code == sqlite3.SQLITE_INTERRUPT:
                self._long_reads.remember(sql, params)
            return await _fetch(self._read, sql, params)  # may wait or take long: off the loop

    @property
    def _read(self) -> aiosqlite.Connection:
        if self._reader is None:
            raise RuntimeError("SqliteStore used before open()")
        return self._reader

    @contextlib.asynccontextmanager
    async def _tx(self) -> AsyncIterator[_Write]:
        if self._writer is None:
            raise RuntimeError("SqliteStore used before open()")
        db = self._writer
        async with self._write_lock:
            await _fetch(db, "BEGIN IMMEDIATE")
            work = _Write(db=db)
            try:
                yield work
                for blob_id in filter(is_inline, work.blobs):  # in the transaction: module doc
                    await _fetch(db, DELETE_INLINE_IF_UNUSED_SQL, (blob_id,) * 3)
                await _fetch(db, "COMMIT")
            except BaseException as error:
                self._noted(error)
                if db.in_transaction:
                    # Cancelled while awaiting the COMMIT, which still finishes in the
                    # thread: the ROLLBACK may find nothing to undo. The first error wins.
                    with contextlib.suppress(sqlite3.OperationalError):
                        await _fetch(db, "ROLLBACK")
                raise
            try:
                # Still under the lock: no writer can add a reference between check and unlink.
                for blob_id in itertools.filterfalse(is_inline, work.blobs):
                    await self._delete_file_if_unused(db, blob_id)
            finally:
                for change in work.changes():  # committed, so announced even if an unlink failed
                    self._feed.publish(change)

    async def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return await _fetch(self._read, sql, params)

    async def _rename_rows(self, tx: Tx, renames: list[Rename]) -> None:
        # Two passes: a new name may equal another moving mailbox's old name ("x/a" → "x").
        await tx.execute_many("UPDATE mailboxes SET name = ? WHERE id = ?",
                              [(f"\x00{mid}", mid) for mid, _, _ in renames])  # fmt: skip
        await tx.execute_many("UPDATE mailboxes SET name = ? WHERE id = ?",
                              [(new, mid) for mid, _, new in renames])  # fmt: skip

    # -- messages: the hot paths -----------------------------------------------------------

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
        job = partial(append_job, mailbox_id, message, utc_now(), inline_body)
        return await self._batched(job, prepare=prepare)  # type: ignore[no-any-return]

    async def append_messages(self, mailbox_id: int, messages: Sequence[NewMessage], *,
                              bodies: Sequence[bytes | None] | None = None,
                              ) -> list[MessageRow]:  # fmt: skip
        # RFC 3502: one job, so one savepoint of the group commit: all or none.
        bodies = list(bodies) if bodies is not None else [None] * len(messages)
        inline = [body if body is not None and is_inline(message.blob_id) else None
                  for message, body in zip(messages, bodies, strict=True)]  # fmt: skip
        files = [(message.blob_id, body) for message, body in zip(messages, bodies, strict=True)
                 if body is not None and not is_inline(message.blob_id)]  # fmt: skip
        prepare = partial(write_blobs_now, self._blobs, files) if files else None
        job = partial(append_many_job, mailbox_id, messages, utc_now(), inline)
        return await self._batched(job, prepare=prepare)  # type: ignore[no-any-return]

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

    async def store_flags(self, mailbox_id: int, uids: Sequence[int], flags: frozenset[str],
                          mode: FlagMode, *, unchanged_since: int | None = None,
                          ) -> list[MessageRow]:  # fmt: skip
        # Flag-only: committed in the WAL without waiting for an fsync (decision 0052).
        return await self._batched(partial(store_flags_job, mailbox_id, uids, flags, mode,
                                             unchanged_since), durable=False,
                                     small=len(uids) <= LOOP_MAX_MESSAGES)  # fmt: skip

    async def expunge(self, mailbox_id: int, uids: Sequence[int]) -> Expunged:
        return await self._batched(partial(expunge_job, mailbox_id, uids))  # type: ignore[no-any-return]

    async def _copy_rows(self, tx: Tx, source_id: int, pairs: list[tuple[int, int]],
                         target_id: int, modseq: int) -> None:  # fmt: skip
        saved = utc_text(utc_now())
        await tx.execute_many(_COPY_MESSAGE, [(target_id, new, modseq, saved, source_id, old)
                                              for old, new in pairs])  # fmt: skip

    # -- outbound queue -------------------------------------------------------------------

    async def finish_queue_entry(self, entry_id: int) -> None:
        # Group commit: the worker's parallel lanes to a destination share one fsync.
        await self._batched(partial(finish_queue_job, entry_id))

    async def claim_due_queue_entries(
        self, now: dt.datetime, limit: int, lease: dt.timedelta
    ) -> list[QueueEntry]:
        # Under the write lock (BEGIN IMMEDIATE): one writer, so select-then-update is atomic.
        async with self._tx() as work:
            rows = await work.fetch(SELECT_DUE, (utc_text(now), limit))
            if rows:
                until = utc_text(now + lease)
                await work.fetch(_LEASE, (until, until, json.dumps([row[0] for row in rows])))
        return [queue_from_row(row, dt.datetime.fromisoformat) for row in rows]

    # -- blobs ----------------------------------------------------------------------------

    async def release_blob_if_unused(self, blob_id: str) -> None:
        async with self._tx() as work:
            work.blobs.add(blob_id)  # deleted by _tx when nothing refers to it

    async def _delete_file_if_unused(self, db: aiosqlite.Connection, blob_id: str) -> None:
        row = await _fetch_one(db, BLOB_IN_USE_SQL, (blob_id, blob_id))
        if not row[0]:
            await self._blobs.delete(blob_id)

    # The rows of small bodies (store/sqliteblobs.py).
    async def put_inline_blob(self, blob_id: str, data: bytes) -> None:
        await self._batched(partial(insert_inline_job, blob_id, data))

    async def read_inline_blobs(self, blob_ids: list[str]) -> dict[str, bytes]:
        if not blob_ids:
            return {}
        if len(blob_ids) <= INLINE_ON_LOOP:  # a few bodies of ≤ INLINE_LIMIT: on the loop
            marks = ",".join("?" * len(blob_ids))  # placeholders only: the ids are bound
            sql = f"SELECT id, data FROM blob_data WHERE id IN ({marks})"  # noqa: S608
            return dict(await self._point_rows(sql, blob_ids))
        return dict(await _fetch(self._read, "SELECT id, data FROM blob_data WHERE id IN"
                                 " (SELECT value FROM json_each(?))", (json.dumps(blob_ids),)))

    async def delete_inline_blob(self, blob_id: str) -> None:
        async with self._tx() as work:
            await work.fetch("DELETE FROM blob_data WHERE id = ?", (blob_id,))


def sqlite_store(path: Path, blob_root: Path, feed: ChangeFeed, *,
                 data_dir: Path | None = None) -> tuple[SqliteStore, SqliteBlobStore]:
    """The SQLite store on `path` and the blob store of its bodies (small ones in the
    database, larger ones as files under `blob_root`); open the store before use.
    `data_dir`: check the database against DATA_DIR's install id (SqliteStore)."""
    files = FileBlobStore(blob_root)
    store = SqliteStore(path, files, feed, data_dir=data_dir)
    return store, SqliteBlobStore(files, store)
