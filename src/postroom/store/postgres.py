"""The PostgreSQL Store backend (psycopg 3 + psycopg_pool), for several nodes on one database.

Owns the connection pool, the PostgreSQL schema (through `store/migrate.py`, under an
advisory lock so nodes starting together migrate once) and every query. Nothing else in
postroom imports psycopg except `store/pgblobs.py` and `store/pgfeed.py`, its companions.
The semantics are `store/sqlite.py`'s, checked by the same contract suite.

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
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from postroom.errors import Refused, TryLater
from postroom.store import api
from postroom.store.api import (
    DEFAULT_MAILBOXES,
    Account,
    AccountSummary,
    Alias,
    Ban,
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
from postroom.store.blobs import BlobStore
from postroom.store.changes import ChangeFeed, WriteEffects
from postroom.store.errors import AlreadyExists, NotFound, StorageCorrupt, storage_failure
from postroom.store.migrate import SCHEMA_VERSION_DDL, Migration, check_install, migrate
from postroom.store.pgblobs import PgBlobStore
from postroom.store.pgfeed import CHANNEL, NotifyListener, render_payload

INBOX = "INBOX"
SEPARATOR = "/"
_MIGRATION_LOCK = 0x706F7374726F6F6D  # "postroom": pg_advisory_xact_lock key
_ROWS_BUILT_ON_LOOP = 2_000
_AUTH_FAILURE_LOCK = 0x61757468  # "auth": pg_advisory_xact_lock(key, hashtext(address))
_CONNECT_SECONDS = 10.0  # `open` gives up after this when the database cannot be reached

Conn = AsyncConnection[Any]
Row = Any

_SELECT_MESSAGES = (
    "SELECT mailbox_id, uid, modseq, blob_id, size, internal_date, flags, saved_date"
    " FROM messages WHERE mailbox_id = %s"
)
_INSERT_MESSAGE = (
    "INSERT INTO messages (mailbox_id, uid, modseq, blob_id, size, internal_date, flags,"
    " saved_date, meta) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
# RFC 4315 §3 COPY keeps flags and internal date; saved_date is the copy's own (RFC 8514).
_COPY_MESSAGES = (
    "INSERT INTO messages (mailbox_id, uid, modseq, blob_id, size, internal_date, flags,"
    " saved_date, meta) SELECT %s, n.new_uid, %s, m.blob_id, m.size, m.internal_date,"
    " m.flags, %s, m.meta FROM messages m JOIN unnest(%s::bigint[], %s::bigint[])"
    " AS n(old_uid, new_uid) ON m.uid = n.old_uid WHERE m.mailbox_id = %s"
)
_MAILBOX_SELECT = (
    "SELECT b.id, b.account_id, b.name, b.uidvalidity, b.uidnext, b.highest_modseq,"
    " b.special_use, EXISTS (SELECT 1 FROM subscriptions s"
    " WHERE s.account_id = b.account_id AND s.name = b.name) FROM mailboxes b"
)
_SELECT_BANS = "SELECT address, created, expires, failures, reason FROM bans"
_SELECT_QUEUE = (
    "SELECT id, message_id, sender, recipient, domain, blob_id, size, created, next_attempt,"
    " attempts, last_error, envid, notify FROM queue"
)
_INSERT_QUEUE = (
    "INSERT INTO queue (message_id, sender, recipient, domain, blob_id, size, created,"
    " next_attempt, attempts, last_error, envid, notify)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id"
)


# -- value conversion ------------------------------------------------------------------


def _aware(when: dt.datetime) -> dt.datetime:
    """Naive datetimes are taken as UTC; the store only ever returns aware ones."""
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _flags_text(flags: Iterable[str]) -> str:
    # Flags are IMAP atoms (RFC 9051 §9 flag-keyword), so they never contain a space.
    return " ".join(sorted(flags))


def _uid_list(uids: Iterable[int]) -> list[int]:
    return sorted({int(uid) for uid in uids})


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
    return MessageRow(row[0], row[1], row[2], row[3], row[4],
                      dt.datetime.fromisoformat(row[5]), flags, row[7])  # fmt: skip


def _messages_from_rows(rows: list[Row]) -> list[MessageRow]:
    flag_cache: dict[str, frozenset[str]] = {}  # few distinct flag sets: share the frozensets
    return [_message_from_row(row, flag_cache) for row in rows]


def _mailbox_from_row(row: Row) -> Mailbox:
    special_use = SpecialUse(row[6]) if row[6] else None
    return Mailbox(row[0], row[1], row[2], row[3], row[4], row[5], special_use, bool(row[7]))


def _queue_from_row(row: Row) -> QueueEntry:
    return QueueEntry(*row)


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


@dataclass(slots=True)
class _Write(WriteEffects):
    """One write transaction's connection, and what it changed (NOTIFY never carries a
    MODSEQ: other nodes re-read)."""

    conn: Conn


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
                         (migration.version, migration.name, _utc_now().isoformat()))  # fmt: skip
        return True


# Once a mailbox has had EXPUNGES_KEPT expunges since the last prune, its records older
# than the newest EXPUNGES_KEPT go (migration 0007); the subqueries run only then. The
# mailbox row is locked by the expunge that runs this.
_PRUNE_EXPUNGED = (
    "UPDATE mailboxes SET expunges_since_prune = 0,"
    " pruned_uid = greatest(pruned_uid, coalesce((SELECT max(uid) FROM expunged"
    "  WHERE mailbox_id = %(id)s AND modseq <= (SELECT modseq FROM expunged"
    "  WHERE mailbox_id = %(id)s ORDER BY modseq DESC LIMIT 1 OFFSET %(keep)s)), 0)),"
    " pruned_modseq = greatest(pruned_modseq, coalesce((SELECT modseq FROM expunged"
    "  WHERE mailbox_id = %(id)s ORDER BY modseq DESC LIMIT 1 OFFSET %(keep)s), 0))"
    " WHERE id = %(id)s AND expunges_since_prune >= %(keep)s"
)


class _PostgresInstall:
    """`migrate.InstallTarget` over one connection (issue 25): the database's install id
    against this node's DATA_DIR/install-id, so a node pointed at an empty or another
    install's database refuses to start instead of serving a blank one."""

    def __init__(self, conn: Conn) -> None:
        self._conn = conn

    async def install_state(self) -> tuple[str | None, bool]:
        row = await _fetch_one(self._conn, "SELECT id FROM install WHERE singleton = 1")
        (has_mail,) = await _fetch_one(
            self._conn, "SELECT EXISTS (SELECT 1 FROM accounts) OR EXISTS (SELECT 1 FROM"
            " messages) OR EXISTS (SELECT 1 FROM queue)")
        return (row[0] if row else None), bool(has_mail)

    async def record_install_id(self, install_id: str) -> str:
        # Nodes starting together on a new database: the first INSERT wins.
        await _fetch(self._conn, "INSERT INTO install (singleton, id, created)"
                     " VALUES (1, %s, %s) ON CONFLICT DO NOTHING",
                     (install_id, _utc_now().isoformat()))  # fmt: skip
        (recorded,) = await _fetch_one(self._conn, "SELECT id FROM install WHERE singleton = 1")
        return str(recorded)


class PostgresStore:
    """`Store` on a PostgreSQL database shared by any number of nodes (module docstring).

    `data_dir`, when given, is this node's DATA_DIR, whose install id the database must
    carry (store/migrate.py); app.py gives it."""

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
        async with self.connection() as conn:
            return await _fetch(conn, sql, params)

    async def _read_one(self, sql: str, params: Sequence[Any] = ()) -> Row:
        rows = await self._read(sql, params)
        return rows[0] if rows else None

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[_Write]:
        async with self.connection() as conn:
            work = _Write(conn)
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

    # -- domains, accounts, aliases -------------------------------------------------------

    async def list_domains(self) -> list[str]:
        rows = await self._read("SELECT name FROM (SELECT name FROM domains UNION"
                                " SELECT source_domain FROM aliases) AS d"
                                " ORDER BY name COLLATE \"C\"")  # fmt: skip
        return [row[0] for row in rows]

    async def is_local_domain(self, domain: str) -> bool:
        row = await self._read_one(
            "SELECT EXISTS (SELECT 1 FROM accounts a JOIN domains d ON d.id = a.domain_id"
            " WHERE d.name = %s) OR EXISTS (SELECT 1 FROM aliases WHERE source_domain = %s)",
            (domain.lower(), domain.lower()),
        )
        return bool(row[0])

    async def create_account(self, address: str, password_hash: str) -> Account:
        address = address.lower()
        try:
            async with self._write() as work:
                conn = work.conn
                await _fetch(conn, "INSERT INTO domains (name) VALUES (%s)"
                             " ON CONFLICT (name) DO NOTHING", (_domain_of(address),))  # fmt: skip
                row = await _fetch_one(
                    conn,
                    "INSERT INTO accounts (address, domain_id, password_hash)"
                    " SELECT %s, id, %s FROM domains WHERE name = %s RETURNING id",
                    (address, password_hash, _domain_of(address)),
                )
                for name, special_use in DEFAULT_MAILBOXES:
                    await self._insert_mailbox(work, row[0], name, special_use)
                    await self._subscribe(conn, row[0], name, True)
        except psycopg.errors.UniqueViolation:
            raise AlreadyExists(f"account {address} already exists") from None
        return Account(row[0], address, password_hash)

    async def get_account(self, address: str) -> Account | None:
        row = await self._read_one("SELECT id, address, password_hash FROM accounts"
                                   " WHERE address = %s", (address.lower(),))  # fmt: skip
        return Account(*row) if row else None

    async def get_account_by_id(self, account_id: int) -> Account | None:
        row = await self._read_one("SELECT id, address, password_hash FROM accounts"
                                   " WHERE id = %s", (account_id,))  # fmt: skip
        return Account(*row) if row else None

    async def set_password(self, address: str, password_hash: str) -> None:
        async with self._write() as work:
            if not await _fetch(work.conn, "UPDATE accounts SET password_hash = %s"
                                " WHERE address = %s RETURNING id",
                                (password_hash, address.lower())):  # fmt: skip
                raise NotFound(f"no account {address}")

    async def delete_account(self, address: str) -> None:
        # Aliases pointing at the account stay: whether to drop them is the CLI's decision.
        async with self._write() as work:
            conn = work.conn
            row = await _fetch_one(conn, "SELECT id, domain_id FROM accounts WHERE address = %s"
                                   " FOR UPDATE", (address.lower(),))  # fmt: skip
            if row is None:
                raise NotFound(f"no account {address}")
            account_id, domain_id = row
            boxes = await _fetch(conn, "SELECT id FROM mailboxes WHERE account_id = %s"
                                 " ORDER BY id FOR UPDATE", (account_id,))  # fmt: skip
            for (box_id,) in boxes:
                work.changed(account_id, box_id, "mailbox")
            work.blobs.update(r[0] for r in await _fetch(
                conn, "SELECT DISTINCT m.blob_id FROM messages m JOIN mailboxes b"
                " ON b.id = m.mailbox_id WHERE b.account_id = %s", (account_id,)))  # fmt: skip
            # ON DELETE CASCADE removes mailboxes, messages, expunge records, subscriptions.
            await _fetch(conn, "DELETE FROM accounts WHERE id = %s", (account_id,))
            await _fetch(conn, "DELETE FROM domains WHERE id = %s AND NOT EXISTS"
                         " (SELECT 1 FROM accounts WHERE domain_id = %s)",
                         (domain_id, domain_id))  # fmt: skip

    async def list_accounts(self) -> list[AccountSummary]:
        rows = await self._read(
            "SELECT a.address, COUNT(m.uid), COALESCE(SUM(m.size), 0) FROM accounts a"
            " LEFT JOIN mailboxes b ON b.account_id = a.id"
            " LEFT JOIN messages m ON m.mailbox_id = b.id"
            " GROUP BY a.id, a.address ORDER BY a.address COLLATE \"C\"",
        )
        return [AccountSummary(row[0], int(row[1]), int(row[2])) for row in rows]

    async def count_accounts(self) -> int:
        row = await self._read_one("SELECT COUNT(*) FROM accounts")
        return int(row[0])

    async def add_alias(self, source: str, target: str) -> None:
        source, target = source.lower(), target.lower()
        try:
            async with self._write() as work:
                await _fetch(work.conn, "INSERT INTO aliases (source, source_domain, target)"
                             " VALUES (%s, %s, %s)",
                             (source, _domain_of(source), target))  # fmt: skip
        except psycopg.errors.UniqueViolation:
            raise AlreadyExists(f"alias {source} -> {target} already exists") from None

    async def delete_alias(self, source: str, target: str | None = None) -> int:
        async with self._write() as work:
            if target is None:
                rows = await _fetch(work.conn, "DELETE FROM aliases WHERE source = %s"
                                    " RETURNING id", (source.lower(),))  # fmt: skip
            else:
                rows = await _fetch(work.conn, "DELETE FROM aliases WHERE source = %s"
                                    " AND target = %s RETURNING id",
                                    (source.lower(), target.lower()))  # fmt: skip
        return len(rows)

    async def list_aliases(self) -> list[Alias]:
        rows = await self._read("SELECT source, target FROM aliases"
                                " ORDER BY source COLLATE \"C\", target COLLATE \"C\"")  # fmt: skip
        return [Alias(*row) for row in rows]

    async def alias_targets(self, source: str) -> list[str]:
        rows = await self._read("SELECT target FROM aliases WHERE source = %s ORDER BY id",
                                (source.lower(),))  # fmt: skip
        return [row[0] for row in rows]

    # -- mailboxes ------------------------------------------------------------------------

    async def list_mailboxes(self, account_id: int) -> list[Mailbox]:
        rows = await self._read(_MAILBOX_SELECT + " WHERE b.account_id = %s"
                                " ORDER BY b.name <> 'INBOX', b.name COLLATE \"C\"",
                                (account_id,))  # fmt: skip
        return [_mailbox_from_row(row) for row in rows]

    async def get_mailbox(self, account_id: int, name: str) -> Mailbox | None:
        row = await self._read_one(_MAILBOX_SELECT + " WHERE b.account_id = %s"
                                   " AND b.name = %s",
                                   (account_id, normalise_mailbox_name(name)))  # fmt: skip
        return _mailbox_from_row(row) if row else None

    async def get_mailbox_by_id(self, mailbox_id: int) -> Mailbox | None:
        row = await self._read_one(_MAILBOX_SELECT + " WHERE b.id = %s", (mailbox_id,))
        return _mailbox_from_row(row) if row else None

    async def _locked_mailbox(self, conn: Conn, mailbox_id: int) -> Mailbox:
        """The mailbox row, locked until COMMIT: the one serialisation point per mailbox."""
        row = await _fetch_one(conn, _MAILBOX_SELECT + " WHERE b.id = %s FOR UPDATE OF b",
                               (mailbox_id,))  # fmt: skip
        if row is None:
            raise NotFound(f"no mailbox with id {mailbox_id}")
        return _mailbox_from_row(row)

    async def _lock_mailboxes(self, conn: Conn, *mailbox_ids: int) -> dict[int, Mailbox]:
        # Ascending id order: two transactions locking the same pair cannot deadlock.
        return {mid: await self._locked_mailbox(conn, mid) for mid in sorted(set(mailbox_ids))}

    async def create_mailbox(
        self, account_id: int, name: str, special_use: SpecialUse | None = None
    ) -> Mailbox:
        try:
            async with self._write() as work:
                mailbox_id = await self._insert_mailbox(work, account_id, name, special_use)
                row = await _fetch_one(work.conn, _MAILBOX_SELECT + " WHERE b.id = %s",
                                       (mailbox_id,))  # fmt: skip
        except psycopg.errors.UniqueViolation:  # created meanwhile on another node
            raise AlreadyExists(f"mailbox {name} already exists") from None
        return _mailbox_from_row(row)

    async def _insert_mailbox(
        self, work: _Write, account_id: int, name: str, special_use: SpecialUse | None
    ) -> int:
        name = normalise_mailbox_name(name)
        conn = work.conn
        if await _fetch(conn, "SELECT 1 FROM mailboxes WHERE account_id = %s AND name = %s",
                        (account_id, name)):  # fmt: skip
            raise AlreadyExists(f"mailbox {name} already exists")
        if not await _fetch(conn, "SELECT 1 FROM accounts WHERE id = %s", (account_id,)):
            raise NotFound(f"no account with id {account_id}")
        row = await _fetch_one(
            conn,
            "INSERT INTO mailboxes (account_id, name, uidvalidity, special_use)"
            " VALUES (%s, %s, %s, %s) RETURNING id",
            (account_id, name, await self._next_uidvalidity(conn),
             special_use.value if special_use else None),
        )  # fmt: skip
        work.changed(account_id, row[0], "mailbox")
        return int(row[0])

    async def _next_uidvalidity(self, conn: Conn) -> int:
        # RFC 9051 §2.3.1.1: a name must never get a UIDVALIDITY it had before. One global
        # counter, seeded from the clock; the upsert locks its row across nodes.
        row = await _fetch_one(
            conn,
            "INSERT INTO counters (name, value) VALUES ('uidvalidity', %s) ON CONFLICT (name)"
            " DO UPDATE SET value = GREATEST(counters.value + 1, excluded.value) RETURNING value",
            (int(time.time()),),
        )
        return int(row[0])

    async def delete_mailbox(self, mailbox_id: int) -> None:
        async with self._write() as work:
            mailbox = await self._locked_mailbox(work.conn, mailbox_id)
            if mailbox.name == INBOX:
                # RFC 9051 §6.3.4: it is an error to attempt to delete INBOX.
                raise Refused("INBOX cannot be deleted", code="CANNOT")
            work.blobs.update(r[0] for r in await _fetch(
                work.conn, "SELECT DISTINCT blob_id FROM messages WHERE mailbox_id = %s",
                (mailbox_id,)))  # fmt: skip
            await _fetch(work.conn, "DELETE FROM mailboxes WHERE id = %s", (mailbox_id,))
            work.changed(mailbox.account_id, mailbox_id, "mailbox")

    async def rename_mailbox(self, mailbox_id: int, new_name: str) -> None:
        new_name = normalise_mailbox_name(new_name)
        try:
            async with self._write() as work:
                mailbox = await self._locked_mailbox(work.conn, mailbox_id)
                if mailbox.name == INBOX:
                    await self._rename_inbox(work, mailbox, new_name)
                else:
                    await self._rename_subtree(work, mailbox, new_name)
        except psycopg.errors.UniqueViolation:  # a clashing name created on another node
            raise AlreadyExists(f"mailbox {new_name} already exists") from None

    async def _rename_subtree(self, work: _Write, mailbox: Mailbox, new_name: str) -> None:
        """Rename a mailbox and its inferiors ("a/b" goes along with "a"), subscriptions too."""
        if new_name == mailbox.name:
            raise AlreadyExists(f"mailbox {new_name} already exists")
        if new_name.startswith(mailbox.name + SEPARATOR):
            raise Refused(f"cannot rename {mailbox.name} to {new_name}", code="CANNOT")
        conn = work.conn
        rows = await _fetch(conn, "SELECT id, name FROM mailboxes WHERE account_id = %s",
                            (mailbox.account_id,))  # fmt: skip
        prefix = mailbox.name + SEPARATOR
        moving = {mid: name for mid, name in rows if mid == mailbox.id or name.startswith(prefix)}
        renames = [(mid, old, new_name + old[len(mailbox.name) :]) for mid, old in moving.items()]
        staying = {row[1] for row in rows if row[0] not in moving}
        if clash := next((new for _, _, new in renames if new in staying), None):
            raise AlreadyExists(f"mailbox {clash} already exists")
        # A new name may equal another moving mailbox's old name ("x/a" → "x"): the unique
        # constraint is checked at COMMIT instead of row by row.
        await _fetch(conn, "SET CONSTRAINTS mailboxes_account_name DEFERRED")
        async with conn.cursor() as cursor:
            await cursor.executemany("UPDATE mailboxes SET name = %s WHERE id = %s",
                                     [(new, mid) for mid, _, new in renames])  # fmt: skip
        subscribed = {r[0] for r in await _fetch(
            conn, "SELECT name FROM subscriptions WHERE account_id = %s",
            (mailbox.account_id,))}  # fmt: skip
        for mid, old, new in renames:
            if old in subscribed:
                await self._subscribe(conn, mailbox.account_id, old, False)
                await self._subscribe(conn, mailbox.account_id, new, True)
            work.changed(mailbox.account_id, mid, "mailbox")

    async def _rename_inbox(self, work: _Write, inbox: Mailbox, new_name: str) -> None:
        """RFC 9051 §6.3.9: messages move to a new mailbox; INBOX stays, empty."""
        conn = work.conn
        new_id = await self._insert_mailbox(work, inbox.account_id, new_name, None)
        # The moved messages keep their UIDs, so the new mailbox continues INBOX's counters
        # (under its own fresh UIDVALIDITY); INBOX sees them expunged.
        modseq = inbox.highest_modseq + 1
        await _fetch(conn, "INSERT INTO expunged (mailbox_id, uid, modseq)"
                     " SELECT mailbox_id, uid, %s FROM messages WHERE mailbox_id = %s",
                     (modseq, inbox.id))  # fmt: skip
        await _fetch(conn, "UPDATE messages SET mailbox_id = %s WHERE mailbox_id = %s",
                     (new_id, inbox.id))  # fmt: skip
        await _fetch(conn, "UPDATE mailboxes SET uidnext = %s, highest_modseq = %s"
                     " WHERE id = %s", (inbox.uidnext, modseq, new_id))  # fmt: skip
        await _fetch(conn, "UPDATE mailboxes SET highest_modseq = %s WHERE id = %s",
                     (modseq, inbox.id))  # fmt: skip
        work.changed(inbox.account_id, inbox.id, "expunge")

    async def set_subscribed(self, account_id: int, name: str, subscribed: bool) -> None:
        async with self._write() as work:
            await self._subscribe(work.conn, account_id, normalise_mailbox_name(name), subscribed)

    async def _subscribe(self, conn: Conn, account_id: int, name: str, subscribed: bool) -> None:
        if subscribed:
            await _fetch(conn, "INSERT INTO subscriptions (account_id, name) VALUES (%s, %s)"
                         " ON CONFLICT DO NOTHING", (account_id, name))  # fmt: skip
        else:
            await _fetch(conn, "DELETE FROM subscriptions WHERE account_id = %s AND name = %s",
                         (account_id, name))  # fmt: skip

    async def list_subscriptions(self, account_id: int) -> list[str]:
        rows = await self._read("SELECT name FROM subscriptions WHERE account_id = %s"
                                " ORDER BY name COLLATE \"C\"", (account_id,))  # fmt: skip
        return [row[0] for row in rows]

    async def mailbox_counts(self, mailbox_id: int) -> MailboxCounts:
        row = await self._read_one(
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE strpos(' ' || flags || ' ', ' \\Seen ') = 0),"
            " COALESCE(SUM(size), 0) FROM messages WHERE mailbox_id = %s",
            (mailbox_id,),
        )
        return MailboxCounts(int(row[0]), int(row[1]), int(row[2]))

    async def mailbox_usage(self, mailbox_id: int) -> MailboxUsage:
        # Counters kept by triggers (migration 0008); the account's mailboxes come from the
        # (account_id, name) index.
        row = await self._read_one(
            "SELECT b.message_count, b.total_size, sum(o.message_count), sum(o.total_size)"
            " FROM mailboxes b JOIN mailboxes o ON o.account_id = b.account_id"
            " WHERE b.id = %s GROUP BY b.id", (mailbox_id,))
        if row is None:
            raise NotFound(f"no mailbox with id {mailbox_id}")
        return MailboxUsage(*(int(value) for value in row))

    async def mailbox_keywords(self, mailbox_id: int) -> frozenset[str]:
        # The distinct flag values, from the covering index messages_flags (migration 0004).
        rows = await self._read("SELECT DISTINCT flags FROM messages WHERE mailbox_id = %s",
                                (mailbox_id,))  # fmt: skip
        return keywords_of(row[0] for row in rows)

    # -- messages -------------------------------------------------------------------------

    async def append_message(self, mailbox_id: int, message: NewMessage, *,
                             body: bytes | None = None) -> MessageRow:
        if body is not None:
            await self._blobs.put(body, blob_id=message.blob_id)
        saved = _utc_now()
        internal_date = _aware(message.internal_date)
        async with self._write() as work:
            # The UPDATE locks the mailbox row: concurrent appends from any node queue here.
            row = await _fetch_one(
                work.conn,
                "UPDATE mailboxes SET uidnext = uidnext + 1, highest_modseq = highest_modseq + 1"
                " WHERE id = %s RETURNING account_id, uidnext - 1, highest_modseq",
                (mailbox_id,),
            )
            if row is None:
                raise NotFound(f"no mailbox with id {mailbox_id}")
            account_id, uid, modseq = row
            await _fetch(
                work.conn,
                _INSERT_MESSAGE,
                (mailbox_id, uid, modseq, message.blob_id, message.size,
                 internal_date.isoformat(), _flags_text(message.flags), saved, message.meta),
            )  # fmt: skip
            work.changed(account_id, mailbox_id, "append", modseq)
        return MessageRow(mailbox_id, uid, modseq, message.blob_id, message.size,
                          internal_date, frozenset(message.flags), saved)  # fmt: skip

    async def list_messages(self, mailbox_id: int, *, changed_since: int = 0) -> list[MessageRow]:
        sql = _SELECT_MESSAGES
        params: tuple[int, ...] = (mailbox_id,)
        if changed_since > 0:
            sql += " AND modseq > %s"
            params += (changed_since,)
        rows = await self._read(sql + " ORDER BY uid", params)
        if len(rows) > _ROWS_BUILT_ON_LOOP:
            return await asyncio.to_thread(_messages_from_rows, rows)
        return _messages_from_rows(rows)

    async def get_message(self, mailbox_id: int, uid: int) -> MessageRow | None:
        row = await self._read_one(_SELECT_MESSAGES + " AND uid = %s", (mailbox_id, uid))
        return _message_from_row(row, {}) if row else None

    async def list_flag_columns(self, mailbox_id: int) -> FlagColumns:
        # An index-only scan of messages_flags (migration 0004).
        rows = await self._read("SELECT uid, modseq, flags FROM messages"
                                " WHERE mailbox_id = %s ORDER BY uid", (mailbox_id,))  # fmt: skip
        return FlagColumns.from_rows(rows)

    async def select_summary(self, mailbox_id: int) -> SelectSummary:
        # One statement, one snapshot, index-only scans of messages_flags: the UIDs in
        # order, the distinct flag values, and the first UID without \Seen, searched only
        # when some distinct value lacks it (see the SQLite twin for the "\Seen " test).
        row = await self._read_one(
            "WITH sets AS MATERIALIZED (SELECT DISTINCT flags FROM messages"
            " WHERE mailbox_id = %s)"
            " SELECT (SELECT coalesce(array_agg(uid ORDER BY uid), '{}') FROM messages"
            " WHERE mailbox_id = %s), (SELECT coalesce(array_agg(flags), '{}') FROM sets),"
            " CASE WHEN EXISTS (SELECT 1 FROM sets WHERE strpos(flags || ' ', '\\Seen ') = 0)"
            " THEN (SELECT uid FROM messages WHERE mailbox_id = %s AND flags IN (SELECT flags"
            " FROM sets WHERE strpos(flags || ' ', '\\Seen ') = 0) ORDER BY uid LIMIT 1) END",
            (mailbox_id, mailbox_id, mailbox_id))
        return SelectSummary.from_texts(list(row[0]), row[1], row[2])

    async def get_messages(self, mailbox_id: int, uids: Sequence[int]) -> list[MessageRow]:
        rows = await self._read(_SELECT_MESSAGES + " AND uid = ANY(%s) ORDER BY uid",
                                (mailbox_id, sorted({int(uid) for uid in uids})))  # fmt: skip
        if len(rows) > _ROWS_BUILT_ON_LOOP:
            return await asyncio.to_thread(_messages_from_rows, rows)
        return _messages_from_rows(rows)

    async def get_meta(self, mailbox_id: int, uid: int) -> str:
        row = await self._read_one("SELECT meta FROM messages WHERE mailbox_id = %s"
                                   " AND uid = %s", (mailbox_id, uid))  # fmt: skip
        if row is None:
            raise NotFound(f"no message {uid} in mailbox {mailbox_id}")
        return str(row[0])

    async def get_metas(self, mailbox_id: int, uids: Sequence[int]) -> dict[int, str]:
        rows = await self._read("SELECT uid, meta FROM messages WHERE mailbox_id = %s"
                                " AND uid = ANY(%s)", (mailbox_id, _uid_list(uids)))  # fmt: skip
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
        async with self._write() as work:
            mailbox = await self._locked_mailbox(work.conn, mailbox_id)
            rows = await _fetch(work.conn, _SELECT_MESSAGES + " AND uid = ANY(%s) ORDER BY uid",
                                (mailbox_id, _uid_list(uids)))  # fmt: skip
            modseq = mailbox.highest_modseq + 1
            changed = []
            for message in (_message_from_row(row, {}) for row in rows):
                new_flags = _apply_flags(message.flags, frozenset(flags), mode)
                # RFC 7162 §3.1.3: UNCHANGEDSINCE leaves messages modified after it alone.
                is_stale = unchanged_since is not None and message.modseq > unchanged_since
                if new_flags != message.flags and not is_stale:
                    changed.append(replace(message, flags=new_flags, modseq=modseq))
            if changed:
                async with work.conn.cursor() as cursor:
                    await cursor.executemany(
                        "UPDATE messages SET flags = %s, modseq = %s"
                        " WHERE mailbox_id = %s AND uid = %s",
                        [(_flags_text(m.flags), modseq, mailbox_id, m.uid) for m in changed],
                    )
                await _fetch(work.conn, "UPDATE mailboxes SET highest_modseq = %s WHERE id = %s",
                             (modseq, mailbox_id))  # fmt: skip
                work.changed(mailbox.account_id, mailbox_id, "flags", modseq)
        return changed

    async def expunge(self, mailbox_id: int, uids: Sequence[int]) -> Expunged:
        async with self._write() as work:
            mailbox = await self._locked_mailbox(work.conn, mailbox_id)
            found = await self._expunge_on(work, mailbox, uids)
        # The MODSEQ `_expunge_on` took under the mailbox row's lock (none: nothing found).
        return Expunged(found, mailbox.highest_modseq + 1 if found else 0)

    async def _expunge_on(self, work: _Write, mailbox: Mailbox, uids: Iterable[int]) -> list[int]:
        """Expunge in a locked mailbox (`mailbox` is its row as locked in this transaction)."""
        conn = work.conn
        modseq = mailbox.highest_modseq + 1
        rows = await _fetch(conn, "DELETE FROM messages WHERE mailbox_id = %s AND uid = ANY(%s)"
                            " RETURNING uid, blob_id", (mailbox.id, _uid_list(uids)))  # fmt: skip
        if not rows:
            return []
        found = sorted(row[0] for row in rows)
        # RFC 7162 §3.2.5.2: remembered so QRESYNC can report them as VANISHED.
        await _fetch(conn, "INSERT INTO expunged (mailbox_id, uid, modseq)"
                     " SELECT %s, u, %s FROM unnest(%s::bigint[]) AS u",
                     (mailbox.id, modseq, found))  # fmt: skip
        await _fetch(conn, "UPDATE mailboxes SET highest_modseq = %s,"
                     " expunges_since_prune = expunges_since_prune + %s WHERE id = %s",
                     (modseq, len(found), mailbox.id))  # fmt: skip
        await _fetch(conn, _PRUNE_EXPUNGED, {"id": mailbox.id, "keep": api.EXPUNGES_KEPT})
        await _fetch(conn, "DELETE FROM expunged WHERE mailbox_id = %s AND modseq <="
                     " (SELECT pruned_modseq FROM mailboxes WHERE id = %s)",
                     (mailbox.id, mailbox.id))  # fmt: skip
        work.blobs.update(row[1] for row in rows)
        work.changed(mailbox.account_id, mailbox.id, "expunge", modseq)
        return found

    async def expunged_since(self, mailbox_id: int, modseq: int) -> list[int]:
        # One statement, one snapshot: the prune horizon and the records it left.
        rows = await self._read("SELECT b.pruned_modseq, b.pruned_uid, e.uid"
                                " FROM mailboxes b LEFT JOIN expunged e ON e.mailbox_id = b.id"
                                " AND e.modseq > %s WHERE b.id = %s ORDER BY e.uid",
                                (modseq, mailbox_id))  # fmt: skip
        uids, pruned_uid = recorded_expunges(rows, modseq)
        if not pruned_uid:
            return uids
        present = await self._read("SELECT uid FROM messages WHERE mailbox_id = %s"
                                   " AND uid <= %s", (mailbox_id, pruned_uid))  # fmt: skip
        return with_forgotten(uids, pruned_uid, (row[0] for row in present))

    async def copy_messages(
        self, source_mailbox_id: int, uids: Sequence[int], target_mailbox_id: int
    ) -> CopyResult:
        async with self._write() as work:
            boxes = await self._lock_mailboxes(work.conn, source_mailbox_id, target_mailbox_id)
            return await self._copy_on(work, boxes[source_mailbox_id], uids,
                                       boxes[target_mailbox_id])  # fmt: skip

    async def move_messages(
        self, source_mailbox_id: int, uids: Sequence[int], target_mailbox_id: int
    ) -> CopyResult:
        # RFC 6851 §3.3: copy then expunge, atomically (one transaction).
        async with self._write() as work:
            boxes = await self._lock_mailboxes(work.conn, source_mailbox_id, target_mailbox_id)
            result = await self._copy_on(work, boxes[source_mailbox_id], uids,
                                         boxes[target_mailbox_id])  # fmt: skip
            source = await self._locked_mailbox(work.conn, source_mailbox_id)  # re-read modseq
            await self._expunge_on(work, source, result.source_uids)
        return result

    async def _copy_on(
        self, work: _Write, source: Mailbox, uids: Sequence[int], target: Mailbox
    ) -> CopyResult:
        conn = work.conn
        rows = await _fetch(conn, "SELECT uid FROM messages WHERE mailbox_id = %s"
                            " AND uid = ANY(%s) ORDER BY uid",
                            (source.id, _uid_list(uids)))  # fmt: skip
        source_uids = tuple(row[0] for row in rows)
        if not source_uids:
            return CopyResult(target.uidvalidity, (), ())
        # RFC 4315 §3: target UIDs are assigned in source-UID order.
        target_uids = tuple(range(target.uidnext, target.uidnext + len(source_uids)))
        modseq = target.highest_modseq + 1
        await _fetch(conn, _COPY_MESSAGES, (target.id, modseq, _utc_now(), list(source_uids),
                                            list(target_uids), source.id))  # fmt: skip
        await _fetch(conn, "UPDATE mailboxes SET uidnext = %s, highest_modseq = %s"
                     " WHERE id = %s", (target_uids[-1] + 1, modseq, target.id))  # fmt: skip
        work.changed(target.account_id, target.id, "append")
        return CopyResult(target.uidvalidity, source_uids, target_uids)

    # -- outbound queue -------------------------------------------------------------------

    async def enqueue(self, entries: Sequence[QueueEntry]) -> list[QueueEntry]:
        stored = []
        async with self._write() as work:
            for entry in entries:
                entry = replace(entry, created=_aware(entry.created).astimezone(dt.UTC),
                                next_attempt=_aware(entry.next_attempt).astimezone(dt.UTC))
                row = await _fetch_one(
                    work.conn,
                    _INSERT_QUEUE,
                    (entry.message_id, entry.sender, entry.recipient, entry.domain,
                     entry.blob_id, entry.size, entry.created, entry.next_attempt,
                     entry.attempts, entry.last_error, entry.envid, entry.notify),
                )  # fmt: skip
                stored.append(replace(entry, id=row[0]))
        return stored

    async def due_queue_entries(self, now: dt.datetime, limit: int) -> list[QueueEntry]:
        rows = await self._read(_SELECT_QUEUE + " WHERE next_attempt <= %s"
                                " ORDER BY next_attempt, id LIMIT %s",
                                (_aware(now), limit))  # fmt: skip
        return [_queue_from_row(row) for row in rows]

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
            " q.notify",
            (_aware(now), limit, _aware(now) + lease, _aware(now) + lease),
        )  # one statement in autocommit: the lock and the update commit together
        return sorted((_queue_from_row(row) for row in rows),
                      key=lambda entry: (entry.next_attempt, entry.id))  # fmt: skip

    async def renew_queue_leases(self, entry_ids: Sequence[int], held_until: dt.datetime,
                                 until: dt.datetime) -> list[int]:
        async with self._write() as work:
            rows = await _fetch(work.conn, "UPDATE queue SET next_attempt = %s,"
                                " leased_until = %s WHERE id = ANY(%s) AND leased_until = %s"
                                " RETURNING id", (_aware(until), _aware(until), list(entry_ids),
                                                  _aware(held_until)))  # fmt: skip
        return sorted(row[0] for row in rows)

    async def list_queue(self) -> list[QueueEntry]:
        rows = await self._read(_SELECT_QUEUE + " ORDER BY id")
        return [_queue_from_row(row) for row in rows]

    async def next_queue_attempt(self) -> dt.datetime | None:
        row = await self._read_one("SELECT min(next_attempt) FROM queue")
        return row[0] if row else None

    async def reschedule(self, entry_id: int, next_attempt: dt.datetime, last_error: str) -> None:
        # A row deleted meanwhile (`queue delete` during an attempt) is not an error.
        async with self._write() as work:
            await _fetch(work.conn, "UPDATE queue SET next_attempt = %s, last_error = %s,"
                         " attempts = attempts + 1, leased_until = NULL WHERE id = %s",
                         (_aware(next_attempt), last_error, entry_id))  # fmt: skip

    async def finish_queue_entry(self, entry_id: int) -> None:
        async with self._write() as work:
            rows = await _fetch(work.conn, "DELETE FROM queue WHERE id = %s RETURNING blob_id",
                                (entry_id,))  # fmt: skip
            work.blobs.update(row[0] for row in rows)

    async def flush_queue(self, now: dt.datetime) -> int:
        async with self._write() as work:
            # A lease in force means a node is delivering the row right now. A claim
            # running concurrently holds its rows' locks: this UPDATE waits for it and
            # then re-checks the lease (READ COMMITTED re-evaluates WHERE on the new row).
            rows = await _fetch(work.conn, "UPDATE queue SET next_attempt = %s,"
                                " leased_until = NULL WHERE leased_until IS NULL"
                                " OR leased_until <= %s RETURNING id",
                                (_aware(now), _aware(now)))  # fmt: skip
        return len(rows)

    async def delete_queue_message(self, message_id: str) -> int:
        async with self._write() as work:
            rows = await _fetch(work.conn, "DELETE FROM queue WHERE message_id = %s"
                                " RETURNING blob_id", (message_id,))  # fmt: skip
            work.blobs.update(row[0] for row in rows)
        return len(rows)

    # -- importers (issue 9: accounts/dms_import.py) -------------------------------------
    # The semantics are sqlite.py's; the mailbox row lock makes them safe across nodes.

    async def set_mailbox_uids(self, mailbox_id: int, uidvalidity: int, uidnext: int) -> Mailbox:
        async with self._write() as work:
            conn = work.conn
            box = await self._locked_mailbox(conn, mailbox_id)
            if uidvalidity == box.uidvalidity:
                # The same UID space: UIDNEXT may only rise (RFC 9051 §2.3.1.1: never reuse).
                if uidnext <= box.uidnext:
                    return box
                await _fetch(conn, "UPDATE mailboxes SET uidnext = %s WHERE id = %s",
                             (uidnext, mailbox_id))  # fmt: skip
                return replace(box, uidnext=uidnext)
            if await _fetch(conn, "SELECT 1 FROM messages WHERE mailbox_id = %s LIMIT 1",
                            (mailbox_id,)):  # fmt: skip
                raise Refused(f"mailbox {box.name} holds messages; its UIDVALIDITY cannot"
                              " change", code="CANNOT")
            # A new UID space: the old one's expunge records mean nothing in it, and the
            # global counter moves past the value so no other mailbox is handed it.
            await _fetch(conn, "DELETE FROM expunged WHERE mailbox_id = %s", (mailbox_id,))
            await self._raise_uidvalidity_counter(conn, uidvalidity)
            await _fetch(conn, "UPDATE mailboxes SET uidvalidity = %s, uidnext = %s,"
                         " highest_modseq = highest_modseq + 1 WHERE id = %s",
                         (uidvalidity, max(uidnext, 1), mailbox_id))  # fmt: skip
            work.changed(box.account_id, mailbox_id, "mailbox")
            return await self._locked_mailbox(conn, mailbox_id)

    async def _raise_uidvalidity_counter(self, conn: Conn, uidvalidity: int) -> None:
        # Later mailboxes must never be handed a UIDVALIDITY that was imported.
        await _fetch(conn, "INSERT INTO counters (name, value) VALUES ('uidvalidity', %s)"
                     " ON CONFLICT (name) DO UPDATE"
                     " SET value = GREATEST(counters.value, excluded.value)",
                     (uidvalidity,))  # fmt: skip

    async def import_message(
        self, mailbox_id: int, message: NewMessage, *, source_key: str, uid: int | None = None
    ) -> MessageRow | None:
        """Append an imported message once per `source_key` and mailbox (None when it was
        imported before, even if expunged since), at `uid` when that is still free."""
        saved, internal_date = _utc_now(), _aware(message.internal_date)
        async with self._write() as work:
            conn = work.conn
            box = await self._locked_mailbox(conn, mailbox_id)
            if not await _fetch(conn, "INSERT INTO imported_keys (mailbox_id, source_key)"
                                " VALUES (%s, %s) ON CONFLICT DO NOTHING RETURNING 1",
                                (mailbox_id, source_key)):  # fmt: skip
                return None
            new_uid = uid if uid is not None and uid >= box.uidnext else box.uidnext
            modseq = box.highest_modseq + 1
            await _fetch(conn, _INSERT_MESSAGE,
                         (mailbox_id, new_uid, modseq, message.blob_id, message.size,
                          internal_date.isoformat(), _flags_text(message.flags), saved,
                          message.meta))  # fmt: skip
            await _fetch(conn, "UPDATE mailboxes SET uidnext = %s, highest_modseq = %s"
                         " WHERE id = %s", (new_uid + 1, modseq, mailbox_id))  # fmt: skip
            work.changed(box.account_id, mailbox_id, "append")
        return MessageRow(mailbox_id, new_uid, modseq, message.blob_id, message.size,
                          internal_date, frozenset(message.flags), saved)  # fmt: skip

    async def imported_keys(self, mailbox_id: int) -> set[str]:
        rows = await self._read("SELECT source_key FROM imported_keys WHERE mailbox_id = %s",
                                (mailbox_id,))  # fmt: skip
        return {row[0] for row in rows}

    # -- bans (issue 7): in the shared database, every node refuses a banned client ------

    async def add_ban(self, ban: Ban) -> None:
        async with self._write() as work:
            await _fetch(work.conn, "DELETE FROM bans WHERE expires <= %s",
                         (_aware(ban.created),))  # fmt: skip
            await _fetch(
                work.conn,
                "INSERT INTO bans (address, created, expires, failures, reason)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (address) DO UPDATE SET"
                " created = excluded.created, expires = excluded.expires,"
                " failures = excluded.failures, reason = excluded.reason",
                (ban.address, _aware(ban.created), _aware(ban.expires), ban.failures,
                 ban.reason),
            )  # fmt: skip

    async def get_ban(self, address: str, now: dt.datetime) -> Ban | None:
        row = await self._read_one(_SELECT_BANS + " WHERE address = %s AND expires > %s",
                                   (address, _aware(now)))  # fmt: skip
        return Ban(*row) if row else None

    async def list_bans(self, now: dt.datetime) -> list[Ban]:
        rows = await self._read(_SELECT_BANS + " WHERE expires > %s"
                                " ORDER BY expires, address COLLATE \"C\"",
                                (_aware(now),))  # fmt: skip
        return [Ban(*row) for row in rows]

    async def delete_ban(self, address: str) -> int:
        async with self._write() as work:
            rows = await _fetch(work.conn, "DELETE FROM bans WHERE address = %s"
                                " RETURNING address", (address,))  # fmt: skip
        return len(rows)

    # -- failed logins (issue 10): counted here, so failures on every node add up ------

    async def record_auth_failure(self, address: str, at: dt.datetime,
                                  since: dt.datetime) -> int:
        async with self._write() as work:
            # Serialise one address's failures across nodes: under READ COMMITTED two
            # uncommitted inserts would not see each other and both counts fall short.
            await _fetch(work.conn, "SELECT pg_advisory_xact_lock(%s::int, hashtext(%s))",
                         (_AUTH_FAILURE_LOCK, address))  # fmt: skip
            await _fetch(work.conn, "DELETE FROM auth_failures WHERE at < %s", (_aware(since),))
            await _fetch(work.conn, "INSERT INTO auth_failures (address, at) VALUES (%s, %s)",
                         (address, _aware(at)))  # fmt: skip
            row = await _fetch_one(work.conn, "SELECT count(*) FROM auth_failures"
                                   " WHERE address = %s AND at >= %s",
                                   (address, _aware(since)))  # fmt: skip
        return int(row[0])

    async def count_auth_failures(self, address: str, since: dt.datetime) -> int:
        row = await self._read_one("SELECT count(*) FROM auth_failures"
                                   " WHERE address = %s AND at >= %s",
                                   (address, _aware(since)))  # fmt: skip
        return int(row[0])

    async def clear_auth_failures(self, address: str) -> int:
        async with self._write() as work:
            rows = await _fetch(work.conn, "DELETE FROM auth_failures WHERE address = %s"
                                " RETURNING address", (address,))  # fmt: skip
        return len(rows)

    # -- bulk import (store/transfer.py), not part of the Store protocol ---------------

    async def is_empty(self) -> bool:
        row = await self._read_one("SELECT NOT EXISTS (SELECT 1 FROM accounts)"
                                   " AND NOT EXISTS (SELECT 1 FROM aliases)"
                                   " AND NOT EXISTS (SELECT 1 FROM queue)")  # fmt: skip
        return bool(row[0])

    async def import_account(self, address: str, password_hash: str) -> int:
        """An account as it is elsewhere: the hash unchanged, no default mailboxes."""
        async with self._write() as work:
            await _fetch(work.conn, "INSERT INTO domains (name) VALUES (%s)"
                         " ON CONFLICT (name) DO NOTHING", (_domain_of(address),))  # fmt: skip
            row = await _fetch_one(
                work.conn,
                "INSERT INTO accounts (address, domain_id, password_hash)"
                " SELECT %s, id, %s FROM domains WHERE name = %s RETURNING id",
                (address.lower(), password_hash, _domain_of(address)),
            )
        return int(row[0])

    async def import_mailbox(self, account_id: int, mailbox: Mailbox) -> int:
        """A mailbox keeping its UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ (RFC 9051 §2.3.1.1:
        clients keep their caches); the UIDVALIDITY counter moves past it."""
        async with self._write() as work:
            row = await _fetch_one(
                work.conn,
                "INSERT INTO mailboxes (account_id, name, uidvalidity, uidnext, highest_modseq,"
                " special_use) VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
                (account_id, mailbox.name, mailbox.uidvalidity, mailbox.uidnext,
                 mailbox.highest_modseq,
                 mailbox.special_use.value if mailbox.special_use else None),
            )  # fmt: skip
            await self._raise_uidvalidity_counter(work.conn, mailbox.uidvalidity)
        return int(row[0])

    async def import_messages(
        self, mailbox_id: int, messages: Sequence[tuple[MessageRow, str]]
    ) -> None:
        """Messages (row, meta) with their own UIDs, MODSEQs, flags and dates."""
        async with self._write() as work, work.conn.cursor() as cursor:
            await cursor.executemany(_INSERT_MESSAGE, [
                (mailbox_id, row.uid, row.modseq, row.blob_id, row.size,
                 _aware(row.internal_date).isoformat(), _flags_text(row.flags),
                 row.saved_date or _utc_now(), meta)
                for row, meta in messages])  # fmt: skip

    async def import_source_keys(self, mailbox_id: int, keys: Iterable[str]) -> None:
        """What importers recorded for a mailbox elsewhere (see `import_message`)."""
        async with self._write() as work:
            await _fetch(work.conn, "INSERT INTO imported_keys (mailbox_id, source_key)"
                         " SELECT %s, k FROM unnest(%s::text[]) AS k ON CONFLICT DO NOTHING",
                         (mailbox_id, sorted(keys)))  # fmt: skip

    async def import_expunged(self, mailbox_id: int, uids: Sequence[int], modseq: int) -> None:
        async with self._write() as work:
            await _fetch(work.conn, "INSERT INTO expunged (mailbox_id, uid, modseq)"
                         " SELECT %s, u, %s FROM unnest(%s::bigint[]) AS u"
                         " ON CONFLICT DO NOTHING", (mailbox_id, modseq, list(uids)))  # fmt: skip

    # -- blobs ----------------------------------------------------------------------------

    async def release_blob_if_unused(self, blob_id: str) -> None:
        row = await self._read_one(
            "SELECT EXISTS (SELECT 1 FROM messages WHERE blob_id = %s)"
            " OR EXISTS (SELECT 1 FROM queue WHERE blob_id = %s)", (blob_id, blob_id))
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
