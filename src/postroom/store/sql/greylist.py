"""Greylisting triplets, auto-whitelisted clients and per-account spam thresholds
(issue 18): the `GreylistStore` methods, written once for both backends.

A triplet's attempt is one upsert with RETURNING (SQLite 3.35+, PostgreSQL), so two nodes
seeing the same triplet at once agree on its `first_seen`.
"""

from __future__ import annotations

import datetime as dt

from postroom.store.greylist_api import GreylistClient, GreylistEntry, SpamThresholds
from postroom.store.sql.base import SqlBackend
from postroom.store.sql.rows import Row

_SEEN = (
    "INSERT INTO greylist (client, sender, recipient, first_seen, last_seen, passes)"
    " VALUES (?, ?, ?, ?, ?, 0) ON CONFLICT (client, sender, recipient) DO UPDATE SET"
    " first_seen = CASE WHEN greylist.last_seen < ? THEN excluded.first_seen"
    " ELSE greylist.first_seen END,"
    " passes = CASE WHEN greylist.last_seen < ? THEN 0 ELSE greylist.passes END,"
    " last_seen = excluded.last_seen"
    " RETURNING client, sender, recipient, first_seen, last_seen, passes"
)
_SELECT_ENTRIES = "SELECT client, sender, recipient, first_seen, last_seen, passes FROM greylist"
_SELECT_CLIENTS = "SELECT client, passes, last_seen FROM greylist_clients"


class GreylistSql(SqlBackend):
    """Statements of the `GreylistStore` role."""

    def _entry(self, row: Row) -> GreylistEntry:
        read = self.dialect.read_time
        return GreylistEntry(row[0], row[1], row[2], read(row[3]), read(row[4]), int(row[5]))

    async def greylist_seen(self, client: str, sender: str, recipient: str,
                            now: dt.datetime, fresh_after: dt.datetime) -> GreylistEntry:
        time = self.dialect.time
        async with self._tx() as tx:
            row = await tx.fetch_one(_SEEN, (client, sender, recipient, time(now), time(now),
                                             time(fresh_after), time(fresh_after)))
        return self._entry(row)

    async def greylist_passed(self, client: str, sender: str, recipient: str,
                              now: dt.datetime) -> int:
        time = self.dialect.time
        async with self._tx() as tx:
            await tx.fetch("UPDATE greylist SET passes = passes + 1 WHERE client = ?"
                           " AND sender = ? AND recipient = ?", (client, sender, recipient))
            row = await tx.fetch_one(
                "INSERT INTO greylist_clients (client, passes, last_seen) VALUES (?, 1, ?)"
                " ON CONFLICT (client) DO UPDATE SET passes = greylist_clients.passes + 1,"
                " last_seen = excluded.last_seen RETURNING passes", (client, time(now)))
        return int(row[0])

    async def greylist_client(self, client: str, since: dt.datetime) -> GreylistClient | None:
        row = await self._point_row(_SELECT_CLIENTS + " WHERE client = ? AND last_seen >= ?",
                                    (client, self.dialect.time(since)))
        if row is None:
            return None
        return GreylistClient(row[0], int(row[1]), self.dialect.read_time(row[2]))

    async def list_greylist(self) -> list[GreylistEntry]:
        rows = await self._rows(_SELECT_ENTRIES + " ORDER BY client, sender, recipient")
        return [self._entry(row) for row in rows]

    async def list_greylist_clients(self) -> list[GreylistClient]:
        rows = await self._rows(_SELECT_CLIENTS + " ORDER BY client")
        read = self.dialect.read_time
        return [GreylistClient(row[0], int(row[1]), read(row[2])) for row in rows]

    async def delete_greylist(self, client: str) -> int:
        async with self._tx() as tx:
            triplets = await tx.fetch("DELETE FROM greylist WHERE client = ? RETURNING client",
                                      (client,))
            clients = await tx.fetch("DELETE FROM greylist_clients WHERE client = ?"
                                     " RETURNING client", (client,))
        return len(triplets) + len(clients)

    async def expire_greylist(self, before: dt.datetime) -> int:
        stale = self.dialect.time(before)
        async with self._tx() as tx:
            triplets = await tx.fetch("DELETE FROM greylist WHERE last_seen < ?"
                                      " RETURNING client", (stale,))
            clients = await tx.fetch("DELETE FROM greylist_clients WHERE last_seen < ?"
                                     " RETURNING client", (stale,))
        return len(triplets) + len(clients)

    async def get_spam_thresholds(self, account_id: int) -> SpamThresholds | None:
        row = await self._point_row("SELECT tag, tag2, kill FROM spam_thresholds"
                                    " WHERE account_id = ?", (account_id,))
        return None if row is None else SpamThresholds(*row)

    async def set_spam_thresholds(self, account_id: int, thresholds: SpamThresholds) -> None:
        async with self._tx() as tx:
            if thresholds.is_empty:
                await tx.fetch("DELETE FROM spam_thresholds WHERE account_id = ?",
                               (account_id,))
                return
            await tx.fetch(
                "INSERT INTO spam_thresholds (account_id, tag, tag2, kill) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (account_id) DO UPDATE SET tag = excluded.tag,"
                " tag2 = excluded.tag2, kill = excluded.kill",
                (account_id, thresholds.tag, thresholds.tag2, thresholds.kill))

    async def list_spam_thresholds(self) -> list[tuple[str, SpamThresholds]]:
        rows = await self._rows("SELECT a.address, t.tag, t.tag2, t.kill FROM spam_thresholds t"
                                " JOIN accounts a ON a.id = t.account_id ORDER BY a.address")
        return [(row[0], SpamThresholds(row[1], row[2], row[3])) for row in rows]
