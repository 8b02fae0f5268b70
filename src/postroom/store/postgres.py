"""The PostgreSQL Store backend (psycopg 3 + psycopg_pool), for several nodes on one database.

Owns the connection pool, the PostgreSQL schema (through `store/migrate.py`, under an
advisory lock so nodes starting together migrate once), the row locks, NOTIFY, and the
queries only PostgreSQL runs (`unnest`, SKIP LOCKED claims, array aggregates, bulk
import). The SQL it shares with SQLite is written once in `store/sql/`, run through
`_Write` (a `sql.base.Tx`) and `DIALECT`. Nothing else in postroom imports psycopg except
`store/pgblobs.py` and `store/pgfeed.py`, its companions. The semantics are SQLite's,
checked by the same contract suite.

Invariants beyond those in `store/api.py`:
- Every write is one transaction (READ COMMITTED). UIDs and MODSEQs come from the mailbox
  row, which each writer locks (`UPDATE … RETURNING` or `SELECT … FOR UPDATE`) before
  touching the mailbox's messages; writers on one mailbox therefore queue on that row,
  whichever node they run on, and numbers stay strictly increasing. A write touching two
  mailboxes (COPY, MOVE) locks both rows in id order, so two of them cannot deadlock.
- Changes are sent with NOTIFY inside the transaction (delivered at COMMIT only) and
  published to this node's feed after COMMIT; `store/pgfeed.py` publishes other nodes'.
- Blobs are deleted only after the COMMIT that dropped their last reference.
- Sessions run with TimeZone UTC; internal dates keep their offset as ISO 8601 text.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import secrets
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from postroom.errors import TryLater
from postroom.store.api import (
    Change,
    Expunged,
    FlagColumns,
    FlagMode,
    Mailbox,
    MessageRow,
    NewMessage,
    QueueEntry,
    SelectSummary,
)
from postroom.store.blobs import BlobStore
from postroom.store.changes import ChangeFeed, WriteEffects
from postroom.store.errors import NotFound, StorageCorrupt, storage_failure
from postroom.store.migrate import SCHEMA_VERSION_DDL, Migration, check_install, migrate
from postroom.store.pgblobs import PgBlobStore
from postroom.store.pgfeed import CHANNEL, NotifyListener, render_payload
from postroom.store.sql import rows as shared  # the statements and mappers both use
from postroom.store.sql.accountstate import AccountStateSql
from postroom.store.sql.apitokens import ApiTokenSql
from postroom.store.sql.base import Params, Tx
from postroom.store.sql.credentials import CredentialSql
from postroom.store.sql.dialect import aware, postgres_dialect
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
from postroom.store.sql.mailboxes import (
    MailboxSql,
    Rename,
    new_object_id,
    raise_uidvalidity_counter,
)
from postroom.store.sql.messages import MessageSql
from postroom.store.sql.metadata import MetadataSql
from postroom.store.sql.mtasts import MtaStsSql
from postroom.store.sql.queue import QueueSql
from postroom.store.sql.quota import QuotaSql
from postroom.store.sql.rows import Row
from postroom.store.sql.sieve import SieveSql
from postroom.store.sql.tls import TlsSql
from postroom.store.sql.tlsreports import TlsReportSql
from postroom.store.sql.web import WebSql

DIALECT = postgres_dialect(psycopg.errors.UniqueViolation)
_MIGRATION_LOCK = 0x706F7374726F6F6D  # "postroom": pg_advisory_xact_lock key
_AUTH_FAILURE_LOCK = 0x61757468  # "auth": pg_advisory_xact_lock(key, hashtext(address))
_CONNECT_SECONDS = 10.0  # `open` gives up after this when the database cannot be reached

Conn = AsyncConnection[Any]

# RFC 4315 §3 COPY keeps flags and internal date; saved_date is the copy's own (RFC 8514).
_COPY_MESSAGES = (
    "INSERT INTO messages (mailbox_id, uid, modseq, blob_id, size, internal_date, flags,"
    " saved_date, meta) SELECT %s, n.new_uid, %s, m.blob_id, m.size, m.internal_date,"
    " m.flags, %s, m.meta FROM messages m JOIN unnest(%s::bigint[], %s::bigint[])"
    " AS n(old_uid, new_uid) ON m.uid = n.old_uid WHERE m.mailbox_id = %s"
)
# One append as one statement in autocommit (issue 22): it takes the UID and MODSEQ (the
# UPDATE locks the mailbox row, so appends from any node still queue there), inserts the
# message row (and the body, when the caller hands it over) and queues the NOTIFY, and
# its COMMIT makes all of it durable at once. Before, BEGIN, UPDATE, INSERT, NOTIFY and
# COMMIT were five round trips, plus a commit of its own for the body. The payload is
# pgfeed.render_payload's `node account mailbox kinds`, built here because only the
# UPDATE knows the account. Nothing is written when the mailbox does not exist.
_APPEND_CTE = (
    "WITH taken AS (UPDATE mailboxes SET uidnext = uidnext + 1,"
    " highest_modseq = highest_modseq + 1 WHERE id = %(mailbox)s"
    " RETURNING account_id, uidnext - 1 AS uid, highest_modseq AS modseq),"
    " added AS (INSERT INTO messages (mailbox_id, uid, modseq, blob_id, size, internal_date,"
    " flags, saved_date, meta) SELECT %(mailbox)s, uid, modseq, %(blob)s, %(size)s,"
    " %(date)s, %(flags)s, %(saved)s, %(meta)s FROM taken RETURNING 1){body}"
    " SELECT account_id, uid, modseq, pg_notify(%(channel)s, concat_ws(' ', %(node)s::text,"
    " account_id, %(mailbox)s::bigint, 'append')) FROM taken, added"
)
_APPEND = _APPEND_CTE.format(body="")
_APPEND_WITH_BODY = _APPEND_CTE.format(
    body=", body AS (INSERT INTO blobs (id, size, data) SELECT %(blob)s,"
         " length(%(body)s::bytea), %(body)s FROM taken RETURNING 1)")
_SELECT_MESSAGES_IN = DIALECT.sql(shared.SELECT_MESSAGES + " AND uid = ANY(?) ORDER BY uid")
_SELECT_SUMMARY = (
    "WITH sets AS MATERIALIZED (SELECT DISTINCT flags FROM messages WHERE mailbox_id = %s)"
    " SELECT (SELECT coalesce(array_agg(uid ORDER BY uid), '{}') FROM messages"
    " WHERE mailbox_id = %s), (SELECT coalesce(array_agg(flags), '{}') FROM sets),"
    " CASE WHEN EXISTS (SELECT 1 FROM sets WHERE strpos(flags || ' ', '\\Seen ') = 0)"
    " THEN (SELECT uid FROM messages WHERE mailbox_id = %s AND flags IN (SELECT flags"
    " FROM sets WHERE strpos(flags || ' ', '\\Seen ') = 0) ORDER BY uid LIMIT 1) END"
)


async def _fetch(conn: Conn, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[Row]:
    cursor = await conn.execute(sql, params)
    return await cursor.fetchall() if cursor.description is not None else []


async def _fetch_one(conn: Conn, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Row:
    rows = await _fetch(conn, sql, params)
    return rows[0] if rows else None


def _where(url: str) -> str:
    """host:port/dbname of a connection string, never its password (for messages)."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "DATABASE_URL (unparsable)"
    host, port = params.get("host", "localhost"), params.get("port", 5432)
    return f"{host}:{port}/{params.get('dbname', '')}"


async def _configure(conn: Conn) -> None:
    await conn.execute("SET TIME ZONE 'UTC'")


def new_pool(url: str, *, min_size: int = 1, max_size: int = 10) -> AsyncConnectionPool[Conn]:
    """An unopened pool of autocommit connections; writes open transactions explicitly."""
    return AsyncConnectionPool(url, min_size=min_size, max_size=max_size, open=False,
                               kwargs={"autocommit": True}, configure=_configure,
                               name="postroom")  # fmt: skip


@dataclass(slots=True, kw_only=True)
class _Write(WriteEffects):
    """One write transaction's connection (`sql.base.Tx`: shared SQL in `?` style), and
    what it changed (NOTIFY never carries a MODSEQ: other nodes re-read)."""

    conn: Conn

    async def fetch(self, sql: str, params: Params = ()) -> list[Row]:
        return await _fetch(self.conn, DIALECT.sql(sql), params)

    async def fetch_one(self, sql: str, params: Params = ()) -> Row:
        return await _fetch_one(self.conn, DIALECT.sql(sql), params)

    async def execute_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        async with self.conn.cursor() as cursor:
            await cursor.executemany(DIALECT.sql(sql), rows)


class _PostgresMigrations:
    """`migrate.MigrationTarget` over one connection, serialised by an advisory lock."""

    def __init__(self, conn: Conn) -> None:
        self._conn = conn

    async def applied_versions(self) -> set[int]:
        async with self._conn.transaction():
            # CREATE TABLE IF NOT EXISTS races with itself across sessions: lock first.
            await _fetch(self._conn, "SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            await _fetch(self._conn, SCHEMA_VERSION_DDL)
            rows = await _fetch(self._conn, "SELECT version FROM schema_version")
        return {row[0] for row in rows}

    async def apply(self, migration: Migration) -> bool:
        conn = self._conn
        async with conn.transaction():
            await _fetch(conn, "SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            # Re-checked under the lock: another node may have just migrated.
            if await _fetch(conn, "SELECT 1 FROM schema_version WHERE version = %s",
                            (migration.version,)):  # fmt: skip
                return False
            await conn.execute(migration.sql.encode())  # no parameters: several statements
            await _fetch(conn, "INSERT INTO schema_version (version, name, applied)"
                         " VALUES (%s, %s, %s)",
                         (migration.version, migration.name,
                          shared.utc_now().isoformat()))  # fmt: skip
        return True




class _PostgresInstall:
    """`migrate.InstallTarget` over one connection (issue 25): the database's install id
    against this node's DATA_DIR/install-id, so a node pointed at an empty or another
    install's database refuses to start instead of serving a blank one."""

    def __init__(self, conn: Conn) -> None:
        self._conn = conn

    async def install_state(self) -> tuple[str | None, bool]:
        return await shared.read_install_state(partial(_fetch_one, self._conn))

    async def record_install_id(self, install_id: str) -> str:
        # Nodes starting together on a new database: the first INSERT wins.
        await _fetch(self._conn, "INSERT INTO install (singleton, id, created)"
                     " VALUES (1, %s, %s) ON CONFLICT DO NOTHING",
                     (install_id, shared.utc_now().isoformat()))  # fmt: skip
        (recorded,) = await _fetch_one(self._conn, shared.INSTALL_ID)
        return str(recorded)


class PostgresStore(DirectorySql, MailboxSql, MessageSql, QueueSql, GuardSql,
                    MetadataSql, QuotaSql, GreylistSql, JunkSql, SieveSql, TlsSql, MtaStsSql,
                    TlsReportSql, DmarcReportSql, FulltextSql, AccountStateSql,
                    WebSql, CredentialSql, JmapStateSql, JmapUploadSql, ApiTokenSql,
                    JmapThreadSql, JmapIdentitySql):
    """`Store` on a PostgreSQL database shared by any number of nodes (module docstring).
    The SQL it shares with SQLite is in store/sql/.

    `data_dir`, when given, is this node's DATA_DIR, whose install id the database must
    carry (store/migrate.py); app.py gives it."""

    dialect = DIALECT

    def __init__(
        self,
        url: str,
        blobs: BlobStore,
        feed: ChangeFeed,
        *,
        pool: AsyncConnectionPool[Conn] | None = None,
        node_id: str | None = None,
        data_dir: Path | None = None,
    ) -> None:
        self._url = url
        self._data_dir = data_dir
        self.damage: StorageCorrupt | None = None  # a statement found the data damaged
        self._blobs = blobs
        self._feed = feed
        self.pool = pool if pool is not None else new_pool(url)
        self.node_id = node_id or secrets.token_hex(8)
        self._listener = NotifyListener(url, self.node_id, feed.publish)
        self._is_open = False

    # -- lifecycle -----------------------------------------------------------------------

    async def open(self) -> None:
        try:
            await self.pool.open(wait=True, timeout=_CONNECT_SECONDS)
        except PoolTimeout as error:  # the pool logs each connection error itself
            await self.pool.close()
            raise TryLater(f"cannot connect to PostgreSQL at {_where(self._url)}") from error
        try:
            async with self.pool.connection() as conn:
                await migrate(_PostgresMigrations(conn), "postgres")
                if self._data_dir is not None:
                    await check_install(_PostgresInstall(conn), self._data_dir,
                                        _where(self._url))
            await self._listener.start()
        except BaseException:
            await self.pool.close()
            raise
        self._is_open = True

    async def close(self) -> None:
        await self._listener.stop()
        await self.pool.close()
        self._is_open = False

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Conn]:
        """A pooled autocommit connection (pgblobs and transfer use it too)."""
        if not self._is_open:
            raise RuntimeError("PostgresStore used before open()")
        try:
            async with self.pool.connection() as conn:
                yield conn
        except (psycopg.Error, PoolTimeout) as error:
            # Its disk full or its data damaged (53100, XX001): store/errors.py's kinds.
            failure = storage_failure(error)
            if isinstance(failure, StorageCorrupt) and self.damage is None:
                self.damage = failure
            if failure is not None:
                raise failure from error
            if not isinstance(error, (psycopg.OperationalError, PoolTimeout)):
                raise
            # The database is down, restarting or saturated: a temporary failure (SMTP
            # 451, IMAP NO [UNAVAILABLE]); whatever was in flight was rolled back.
            raise TryLater(f"database unavailable: {error}") from error

    async def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """A read in psycopg's own placeholders (this module's statements)."""
        async with self.connection() as conn:
            return await _fetch(conn, sql, params)

    async def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return await self._read(DIALECT.sql(sql), params)

    async def _point_rows(self, sql: str, params: Sequence[Any]) -> list[Row]:
        return await self._rows(sql, params)

    @contextlib.asynccontextmanager
    async def _tx(self) -> AsyncIterator[_Write]:
        async with self.connection() as conn:
            work = _Write(conn=conn)
            async with conn.transaction():
                yield work
                for change in work.changes():  # delivered by PostgreSQL at COMMIT only
                    await _fetch(conn, "SELECT pg_notify(%s, %s)",
                                 (CHANNEL, render_payload(self.node_id, change)))  # fmt: skip
        try:
            for blob_id in work.blobs:
                await self.release_blob_if_unused(blob_id)
        finally:
            for change in work.changes():  # committed, so announced even if a delete failed
                self._feed.publish(change)

    async def _lock_address(self, tx: Tx, address: str) -> None:
        await tx.fetch("SELECT pg_advisory_xact_lock(?::int, hashtext(?))",
                       (_AUTH_FAILURE_LOCK, address))  # fmt: skip

    async def _rename_rows(self, tx: Tx, renames: list[Rename]) -> None:
        # The unique constraint is checked at COMMIT instead of row by row.
        await tx.fetch("SET CONSTRAINTS mailboxes_account_name DEFERRED")
        await tx.execute_many("UPDATE mailboxes SET name = ? WHERE id = ?",
                              [(new, mid) for mid, _, new in renames])  # fmt: skip

    # -- messages: the hot paths, under the mailbox row's lock ----------------------------

    async def append_message(self, mailbox_id: int, message: NewMessage, *,
                             body: bytes | None = None) -> MessageRow:
        saved = shared.utc_now()
        params = {"mailbox": mailbox_id, "blob": message.blob_id, "size": message.size,
                  "date": aware(message.internal_date).isoformat(),
                  "flags": shared.flags_text(message.flags), "saved": saved,
                  "meta": message.meta, "channel": CHANNEL, "node": self.node_id,
                  "body": body}  # fmt: skip
        # The body goes in the same statement when the blobs are this database's table.
        tables = self._blobs if isinstance(self._blobs, PgBlobStore) else None
        if body is not None and tables is None:
            await self._blobs.put(body, blob_id=message.blob_id)
        with_body = body is not None and tables is not None
        async with self.connection() as conn:
            row = await _fetch_one(conn, _APPEND_WITH_BODY if with_body else _APPEND, params)
        if row is None:
            raise NotFound(f"no mailbox with id {mailbox_id}")
        account_id, uid, modseq = row[0], row[1], row[2]
        if with_body and tables is not None and body is not None:
            await tables.cache_written(message.blob_id, body)
        self._feed.publish(Change(account_id, mailbox_id, frozenset({"append"}), modseq))
        return shared.new_message_row(mailbox_id, message, saved, uid, modseq)

    async def append_messages(self, mailbox_id: int, messages: Sequence[NewMessage], *,
                              bodies: Sequence[bytes | None] | None = None,
                              ) -> list[MessageRow]:  # fmt: skip
        for message, body in zip(messages, bodies or (), strict=False):
            if body is not None:
                await self._blobs.put(body, blob_id=message.blob_id)
        saved, rows = shared.utc_now(), []
        async with self._tx() as work:  # RFC 3502: one transaction, all or none
            for message in messages:
                row = await work.fetch_one(shared.TAKE_UID, (mailbox_id,))
                if row is None:
                    raise NotFound(f"no mailbox with id {mailbox_id}")
                account_id, uid, modseq = row
                rows.append(shared.new_message_row(mailbox_id, message, saved, uid, modseq))
                await work.fetch(shared.INSERT_MESSAGE,
                                 shared.insert_params(DIALECT, rows[-1], message.meta))
                work.changed(account_id, mailbox_id, "append", modseq)
        return rows

    async def list_flag_columns(self, mailbox_id: int) -> FlagColumns:
        # An index-only scan of messages_flags (migration 0004).
        rows = await self._read("SELECT uid, modseq, flags FROM messages"
                                " WHERE mailbox_id = %s ORDER BY uid", (mailbox_id,))  # fmt: skip
        return FlagColumns.from_rows(rows)

    async def select_summary(self, mailbox_id: int) -> SelectSummary:
        # One statement, one snapshot, index-only scans of messages_flags: the UIDs in
        # order, the distinct flag values, and the first UID without \Seen, searched only
        # when some distinct value lacks it (see the SQLite twin for the "\Seen " test).
        rows = await self._read(_SELECT_SUMMARY, (mailbox_id,) * 3)
        return SelectSummary.from_texts(list(rows[0][0]), rows[0][1], rows[0][2])

    async def store_flags(self, mailbox_id: int, uids: Sequence[int], flags: frozenset[str],
                          mode: FlagMode, *, unchanged_since: int | None = None,
                          ) -> list[MessageRow]:  # fmt: skip
        async with self._tx() as work:
            mailbox = await self._locked_mailbox(work, mailbox_id)
            rows = await _fetch(work.conn, _SELECT_MESSAGES_IN, (mailbox_id, DIALECT.uids(uids)))
            modseq = mailbox.highest_modseq + 1
            changed = [replace(message, flags=new_flags, modseq=modseq) for message, new_flags
                       in shared.flag_updates(rows, frozenset(flags), mode, unchanged_since,
                                       DIALECT.read_time)]  # fmt: skip
            if changed:
                await work.execute_many(shared.UPDATE_FLAGS, [
                    (shared.flags_text(m.flags), modseq, mailbox_id, m.uid) for m in changed])
                await work.fetch("UPDATE mailboxes SET highest_modseq = ? WHERE id = ?",
                                 (modseq, mailbox_id))  # fmt: skip
                work.changed(mailbox.account_id, mailbox_id, "flags", modseq)
        return changed

    async def expunge(self, mailbox_id: int, uids: Sequence[int]) -> Expunged:
        async with self._tx() as work:
            mailbox = await self._locked_mailbox(work, mailbox_id)
            found = await self._expunge_on(work, mailbox_id, uids)
        # The MODSEQ `_expunge_on` took under the mailbox row's lock (none: nothing found).
        return Expunged(found, mailbox.highest_modseq + 1 if found else 0)

    async def _copy_rows(self, tx: Tx, source_id: int, pairs: list[tuple[int, int]],
                         target_id: int, modseq: int) -> None:  # fmt: skip
        assert isinstance(tx, _Write)
        await _fetch(tx.conn, _COPY_MESSAGES, (target_id, modseq, shared.utc_now(),
                                               [old for old, _ in pairs],
                                               [new for _, new in pairs], source_id))

    # -- outbound queue -------------------------------------------------------------------

    async def claim_due_queue_entries(
        self, now: dt.datetime, limit: int, lease: dt.timedelta
    ) -> list[QueueEntry]:
        """Due entries, leased to the caller: their `next_attempt` moves to `now + lease`,
        so no other node takes them until the caller reschedules or finishes them, or
        until the lease runs out because the caller died; `leased_until` marks them for
        `flush_queue`. SKIP LOCKED: nodes claiming at the same moment get disjoint sets
        instead of waiting on each other. The entries come back with the `next_attempt`
        they had before the claim."""
        rows = await self._read(
            "WITH due AS (SELECT id, next_attempt FROM queue WHERE next_attempt <= %s"
            " ORDER BY next_attempt, id LIMIT %s FOR UPDATE SKIP LOCKED)"
            " UPDATE queue q SET next_attempt = %s, leased_until = %s"
            " FROM due WHERE q.id = due.id"
            " RETURNING q.id, q.message_id, q.sender, q.recipient, q.domain, q.blob_id,"
            " q.size, q.created, due.next_attempt, q.attempts, q.last_error, q.envid,"
            " q.notify, q.orcpt, q.ret, q.body, q.requiretls, q.delay_notified",
            (aware(now), limit, aware(now) + lease, aware(now) + lease),
        )  # one statement in autocommit: the lock and the update commit together
        return sorted((shared.queue_from_row(row, DIALECT.read_time) for row in rows),
                      key=lambda entry: (entry.next_attempt, entry.id))  # fmt: skip

    # -- bulk import (store/transfer.py), not part of the Store protocol ---------------

    async def is_empty(self) -> bool:
        (row,) = await self._read("SELECT NOT EXISTS (SELECT 1 FROM accounts)"
                                   " AND NOT EXISTS (SELECT 1 FROM aliases)"
                                   " AND NOT EXISTS (SELECT 1 FROM queue)")  # fmt: skip
        return bool(row[0])

    async def import_account(self, address: str, password_hash: str) -> int:
        """An account as it is elsewhere: the hash unchanged, no default mailboxes."""
        async with self._tx() as work:
            await _fetch(work.conn, "INSERT INTO domains (name) VALUES (%s)"
                         " ON CONFLICT (name) DO NOTHING",
                         (shared.domain_of(address),))  # fmt: skip
            row = await _fetch_one(
                work.conn,
                "INSERT INTO accounts (address, domain_id, password_hash)"
                " SELECT %s, id, %s FROM domains WHERE name = %s RETURNING id",
                (address.lower(), password_hash, shared.domain_of(address)),
            )
        return int(row[0])

    async def import_mailbox(self, account_id: int, mailbox: Mailbox) -> int:
        """A mailbox keeping its UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ (RFC 9051 §2.3.1.1:
        clients keep their caches); the UIDVALIDITY counter moves past it."""
        async with self._tx() as work:
            row = await _fetch_one(
                work.conn,
                "INSERT INTO mailboxes (account_id, name, uidvalidity, uidnext, highest_modseq,"
                " special_use, object_id) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (account_id, mailbox.name, mailbox.uidvalidity, mailbox.uidnext,
                 mailbox.highest_modseq,
                 mailbox.special_use.value if mailbox.special_use else None,
                 mailbox.object_id or new_object_id()),  # RFC 8474: MAILBOXID kept
            )  # fmt: skip
            await raise_uidvalidity_counter(work, DIALECT, mailbox.uidvalidity)
        return int(row[0])

    async def import_messages(
        self, mailbox_id: int, messages: Sequence[tuple[MessageRow, str]]
    ) -> None:
        """Messages (row, meta) with their own UIDs, MODSEQs, flags and dates."""
        async with self._tx() as work, work.conn.cursor() as cursor:
            await cursor.executemany(DIALECT.sql(shared.INSERT_MESSAGE), [
                (mailbox_id, row.uid, row.modseq, row.blob_id, row.size,
                 aware(row.internal_date).isoformat(), shared.flags_text(row.flags),
                 row.saved_date or shared.utc_now(), meta)
                for row, meta in messages])  # fmt: skip

    async def import_source_keys(self, mailbox_id: int, keys: Iterable[str]) -> None:
        """What importers recorded for a mailbox elsewhere (see `import_message`)."""
        async with self._tx() as work:
            await _fetch(work.conn, "INSERT INTO imported_keys (mailbox_id, source_key)"
                         " SELECT %s, k FROM unnest(%s::text[]) AS k ON CONFLICT DO NOTHING",
                         (mailbox_id, sorted(keys)))  # fmt: skip

    async def import_expunged(self, mailbox_id: int, uids: Sequence[int], modseq: int) -> None:
        async with self._tx() as work:
            await _fetch(work.conn, "INSERT INTO expunged (mailbox_id, uid, modseq)"
                         " SELECT %s, u, %s FROM unnest(%s::bigint[]) AS u"
                         " ON CONFLICT DO NOTHING", (mailbox_id, modseq, list(uids)))  # fmt: skip

    # -- blobs ----------------------------------------------------------------------------

    async def release_blob_if_unused(self, blob_id: str) -> None:
        (row,) = await self._read(
            "SELECT EXISTS (SELECT 1 FROM messages WHERE blob_id = %s)"
            " OR EXISTS (SELECT 1 FROM queue WHERE blob_id = %s)"
            " OR EXISTS (SELECT 1 FROM jmap_uploads WHERE blob_id = %s)",  # migration 0027
            (blob_id, blob_id, blob_id))
        if not row[0]:
            await self._blobs.delete(blob_id)


async def open_postgres(
    url: str, feed: ChangeFeed, cache_dir: Path, *, data_dir: Path | None = None
) -> tuple[PostgresStore, PgBlobStore]:
    """The store and its blob table over one pool, opened; bodies cached under `cache_dir`;
    `data_dir`: check the database against DATA_DIR's install id (PostgresStore)."""
    pool = new_pool(url)
    blobs = PgBlobStore(pool, cache_dir)  # the store opens and closes the shared pool
    store = PostgresStore(url, blobs, feed, pool=pool, data_dir=data_dir)
    await asyncio.to_thread(blobs.prepare)
    await asyncio.to_thread(blobs.prune_cache)
    await store.open()
    return store, blobs
