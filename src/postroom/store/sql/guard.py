"""Bans (issue 7) and failed logins (issue 10): `GuardStore`, in the shared database so
every node refuses a banned client and every node's failures add up."""

from __future__ import annotations

import datetime as dt

from postroom.store.api import Ban
from postroom.store.sql.base import SqlBackend
from postroom.store.sql.rows import SELECT_BANS, ban_from_row

_COUNT_FAILURES = "SELECT count(*) FROM auth_failures WHERE address = ? AND at >= ?"


class GuardSql(SqlBackend):
    async def add_ban(self, ban: Ban) -> None:
        time = self.dialect.time
        async with self._tx() as tx:
            await tx.fetch("DELETE FROM bans WHERE expires <= ?", (time(ban.created),))
            await tx.fetch(
                "INSERT INTO bans (address, created, expires, failures, reason)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (address) DO UPDATE SET"
                " created = excluded.created, expires = excluded.expires,"
                " failures = excluded.failures, reason = excluded.reason",
                (ban.address, time(ban.created), time(ban.expires), ban.failures, ban.reason),
            )

    async def get_ban(self, address: str, now: dt.datetime) -> Ban | None:
        row = await self._point_row(SELECT_BANS + " WHERE address = ? AND expires > ?",
                                    (address, self.dialect.time(now)))  # fmt: skip
        return ban_from_row(row, self.dialect.read_time) if row else None

    async def list_bans(self, now: dt.datetime) -> list[Ban]:
        rows = await self._rows(SELECT_BANS + " WHERE expires > ? ORDER BY expires, address"
                                + self.dialect.collate, (self.dialect.time(now),))  # fmt: skip
        return [ban_from_row(row, self.dialect.read_time) for row in rows]

    async def delete_ban(self, address: str) -> int:
        async with self._tx() as tx:
            rows = await tx.fetch("DELETE FROM bans WHERE address = ? RETURNING address",
                                  (address,))  # fmt: skip
        return len(rows)

    async def record_auth_failure(self, address: str, at: dt.datetime,
                                  since: dt.datetime) -> int:
        time = self.dialect.time
        async with self._tx() as tx:
            # Under READ COMMITTED two uncommitted inserts would not see each other and
            # both counts fall short: one address's failures are serialised.
            await self._lock_address(tx, address)
            await tx.fetch("DELETE FROM auth_failures WHERE at < ?", (time(since),))
            await tx.fetch("INSERT INTO auth_failures (address, at) VALUES (?, ?)",
                           (address, time(at)))  # fmt: skip
            row = await tx.fetch_one(_COUNT_FAILURES, (address, time(since)))
        return int(row[0])

    async def count_auth_failures(self, address: str, since: dt.datetime) -> int:
        row = await self._row(_COUNT_FAILURES, (address, self.dialect.time(since)))
        return int(row[0])

    async def clear_auth_failures(self, address: str) -> int:
        async with self._tx() as tx:
            rows = await tx.fetch("DELETE FROM auth_failures WHERE address = ?"
                                  " RETURNING address", (address,))  # fmt: skip
        return len(rows)
