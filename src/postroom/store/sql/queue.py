"""The outbound queue (issue 4): `QueueStore` but for the claim, which each backend makes
atomic its own way (SQLite: its one writer; PostgreSQL: FOR UPDATE SKIP LOCKED).

Leases (issue 10): a claimed entry's `next_attempt` and `leased_until` move to the end of
its lease; `reschedule` ends the lease, `finish_queue_entry` the entry."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import replace

from postroom.store.api import QueueEntry
from postroom.store.sql.base import SqlBackend
from postroom.store.sql.dialect import aware
from postroom.store.sql.rows import SELECT_QUEUE, queue_from_row

INSERT_QUEUE = (
    "INSERT INTO queue (message_id, sender, recipient, domain, blob_id, size, created,"
    " next_attempt, attempts, last_error, envid, notify, orcpt, ret, body, requiretls,"
    " delay_notified) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id"
)
SELECT_DUE = SELECT_QUEUE + " WHERE next_attempt <= ? ORDER BY next_attempt, id LIMIT ?"


class QueueSql(SqlBackend):
    async def enqueue(self, entries: Sequence[QueueEntry]) -> list[QueueEntry]:
        time, stored = self.dialect.time, []
        async with self._tx() as tx:
            for entry in entries:
                entry = replace(entry, created=aware(entry.created).astimezone(dt.UTC),
                                next_attempt=aware(entry.next_attempt).astimezone(dt.UTC))
                row = await tx.fetch_one(INSERT_QUEUE, (
                    entry.message_id, entry.sender, entry.recipient, entry.domain,
                    entry.blob_id, entry.size, time(entry.created), time(entry.next_attempt),
                    entry.attempts, entry.last_error, entry.envid, entry.notify,
                    entry.orcpt, entry.ret, entry.body, int(entry.is_requiretls),
                    int(entry.is_delay_notified)))  # fmt: skip
                stored.append(replace(entry, id=row[0]))
        return stored

    async def due_queue_entries(self, now: dt.datetime, limit: int) -> list[QueueEntry]:
        rows = await self._rows(SELECT_DUE, (self.dialect.time(now), limit))
        return [queue_from_row(row, self.dialect.read_time) for row in rows]

    async def renew_queue_leases(self, entry_ids: Sequence[int], held_until: dt.datetime,
                                 until: dt.datetime) -> list[int]:
        # On SQLite leased_until is compared as text: both sides are the same instant's.
        time = self.dialect.time
        async with self._tx() as tx:
            rows = await tx.fetch("UPDATE queue SET next_attempt = ?, leased_until = ?"
                                  " WHERE id" + self.dialect.in_uids + " AND leased_until = ?"
                                  " RETURNING id", (time(until), time(until),
                                  self.dialect.uids(entry_ids), time(held_until)))  # fmt: skip
        return sorted(row[0] for row in rows)

    async def list_queue(self) -> list[QueueEntry]:
        rows = await self._rows(SELECT_QUEUE + " ORDER BY id")
        return [queue_from_row(row, self.dialect.read_time) for row in rows]

    async def queue_summary(self) -> tuple[int, dt.datetime | None]:
        row = await self._row("SELECT count(*), min(created) FROM queue")
        if not row or not row[0]:
            return 0, None
        return int(row[0]), self.dialect.read_time(row[1])

    async def next_queue_attempt(self) -> dt.datetime | None:
        row = await self._row("SELECT min(next_attempt) FROM queue")
        return self.dialect.read_time(row[0]) if row and row[0] else None

    async def reschedule(self, entry_id: int, next_attempt: dt.datetime, last_error: str) -> None:
        # A row deleted meanwhile (`queue delete` during an attempt) is not an error.
        async with self._tx() as tx:
            await tx.fetch("UPDATE queue SET next_attempt = ?, last_error = ?,"
                           " attempts = attempts + 1, leased_until = NULL WHERE id = ?",
                           (self.dialect.time(next_attempt), last_error, entry_id))  # fmt: skip

    async def finish_queue_entry(self, entry_id: int) -> None:
        async with self._tx() as tx:
            rows = await tx.fetch("DELETE FROM queue WHERE id = ? RETURNING blob_id",
                                  (entry_id,))  # fmt: skip
            tx.blobs.update(row[0] for row in rows)

    async def mark_delay_notified(self, entry_ids: Sequence[int]) -> None:
        if not entry_ids:
            return
        async with self._tx() as tx:
            await tx.fetch("UPDATE queue SET delay_notified = 1 WHERE id" + self.dialect.in_uids
                           + " RETURNING id", (self.dialect.uids(entry_ids),))  # fmt: skip

    async def flush_queue(self, now: dt.datetime, message_id: str | None = None) -> int:
        one = " AND message_id = ?" if message_id is not None else ""
        params = (self.dialect.time(now),) * 2 + ((message_id,) if message_id is not None
                                                    else ())
        async with self._tx() as tx:
            # A lease in force means a worker is delivering the row right now. On
            # PostgreSQL a claim running concurrently holds its rows' locks: this UPDATE
            # waits for it, then re-checks the lease (READ COMMITTED re-evaluates WHERE).
            rows = await tx.fetch("UPDATE queue SET next_attempt = ?, leased_until = NULL"
                                  " WHERE (leased_until IS NULL OR leased_until <= ?)" + one
                                  + " RETURNING id", params)  # fmt: skip
        return len(rows)

    async def delete_queue_message(self, message_id: str) -> int:
        async with self._tx() as tx:
            rows = await tx.fetch("DELETE FROM queue WHERE message_id = ? RETURNING blob_id",
                                  (message_id,))  # fmt: skip
            tx.blobs.update(row[0] for row in rows)
        return len(rows)
