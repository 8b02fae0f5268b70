"""Sieve scripts, vacation replies and duplicate ids (issue 19): `SieveStore`, written
once for both backends."""

from __future__ import annotations

import datetime as dt

from postroom.store.sieve_api import SieveScriptInfo, storable_text
from postroom.store.sql.base import SqlBackend

MAX_DUPLICATE_IDS = 50_000  # loaded per delivery that runs a `duplicate` test

_LIST = ("SELECT name, is_active, length(content) FROM sieve_scripts WHERE account_id = ?"
         " ORDER BY name")


def _info(row: tuple[object, ...]) -> SieveScriptInfo:
    return SieveScriptInfo(str(row[0]), bool(row[1]), int(str(row[2])))


class SieveSql(SqlBackend):
    async def list_sieve_scripts(self, account_id: int) -> list[SieveScriptInfo]:
        rows = await self._rows(_LIST + self.dialect.collate, (account_id,))
        return [_info(tuple(row)) for row in rows]

    async def get_sieve_script(self, account_id: int, name: str) -> str | None:
        rows = await self._rows("SELECT content FROM sieve_scripts WHERE account_id = ?"
                                " AND name = ?", (account_id, name))  # fmt: skip
        return str(rows[0][0]) if rows else None

    async def put_sieve_script(self, account_id: int, name: str, content: str,
                               now: dt.datetime) -> None:  # fmt: skip
        async with self._tx() as tx:
            await tx.fetch(
                "INSERT INTO sieve_scripts (account_id, name, content, is_active, updated)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (account_id, name) DO UPDATE SET"
                " content = excluded.content, updated = excluded.updated",
                (account_id, name, content, False, self.dialect.time(now)))

    async def delete_sieve_script(self, account_id: int, name: str) -> bool:
        async with self._tx() as tx:
            rows = await tx.fetch("DELETE FROM sieve_scripts WHERE account_id = ? AND name = ?"
                                  " RETURNING name", (account_id, name))  # fmt: skip
        return bool(rows)

    async def rename_sieve_script(self, account_id: int, old: str, new: str) -> bool:
        async with self._tx() as tx:
            rows = await tx.fetch("UPDATE sieve_scripts SET name = ? WHERE account_id = ?"
                                  " AND name = ? RETURNING name", (new, account_id, old))
        return bool(rows)

    async def activate_sieve_script(self, account_id: int, name: str | None) -> bool:
        async with self._tx() as tx:
            if name is not None:
                found = await tx.fetch("SELECT name FROM sieve_scripts WHERE account_id = ?"
                                       " AND name = ?", (account_id, name))  # fmt: skip
                if not found:
                    return False
            await tx.fetch("UPDATE sieve_scripts SET is_active = ? WHERE account_id = ?"
                           " AND is_active", (False, account_id))  # fmt: skip
            if name is not None:
                await tx.fetch("UPDATE sieve_scripts SET is_active = ? WHERE account_id = ?"
                               " AND name = ?", (True, account_id, name))  # fmt: skip
        return True

    async def active_sieve_script(self, account_id: int) -> tuple[str, str] | None:
        rows = await self._point_rows("SELECT name, content FROM sieve_scripts"
                                      " WHERE account_id = ? AND is_active", (account_id,))
        return (str(rows[0][0]), str(rows[0][1])) if rows else None

    async def list_global_sieve_scripts(self) -> list[SieveScriptInfo]:
        rows = await self._rows("SELECT name, ?, length(content) FROM sieve_global_scripts"
                                " ORDER BY name" + self.dialect.collate, (False,))
        return [_info(tuple(row)) for row in rows]

    async def get_global_sieve_script(self, name: str) -> str | None:
        rows = await self._rows("SELECT content FROM sieve_global_scripts WHERE name = ?",
                                (name,))  # fmt: skip
        return str(rows[0][0]) if rows else None

    async def put_global_sieve_script(self, name: str, content: str,
                                      now: dt.datetime) -> None:  # fmt: skip
        async with self._tx() as tx:
            await tx.fetch(
                "INSERT INTO sieve_global_scripts (name, content, updated) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET content = excluded.content,"
                " updated = excluded.updated", (name, content, self.dialect.time(now)))

    async def delete_global_sieve_script(self, name: str) -> bool:
        async with self._tx() as tx:
            rows = await tx.fetch("DELETE FROM sieve_global_scripts WHERE name = ?"
                                  " RETURNING name", (name,))  # fmt: skip
        return bool(rows)

    async def vacation_replied(self, account_id: int, handle: str, sender: str,
                               now: dt.datetime) -> bool:  # fmt: skip
        rows = await self._rows(
            "SELECT 1 FROM sieve_vacation_replies WHERE account_id = ? AND handle = ?"
            " AND sender = ? AND expires > ?",
            (account_id, storable_text(handle), storable_text(sender.lower()),
             self.dialect.time(now)))
        return bool(rows)

    async def record_vacation_reply(self, account_id: int, handle: str, sender: str,
                                    expires: dt.datetime, now: dt.datetime) -> None:
        time = self.dialect.time
        async with self._tx() as tx:
            await tx.fetch("DELETE FROM sieve_vacation_replies WHERE expires <= ?",
                           (time(now),))  # fmt: skip
            await tx.fetch(
                "INSERT INTO sieve_vacation_replies (account_id, handle, sender, expires)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (account_id, handle, sender) DO UPDATE"
                " SET expires = excluded.expires",
                (account_id, storable_text(handle), storable_text(sender.lower()), time(expires)))

    async def sieve_duplicates(self, account_id: int, now: dt.datetime
                               ) -> frozenset[tuple[str, str]]:  # fmt: skip
        rows = await self._rows(
            "SELECT handle, value FROM sieve_duplicates WHERE account_id = ? AND expires > ?"
            f" LIMIT {MAX_DUPLICATE_IDS}", (account_id, self.dialect.time(now)))
        return frozenset((str(row[0]), str(row[1])) for row in rows)  # as _text stored them

    async def record_sieve_duplicates(self, account_id: int,
                                      marks: list[tuple[str, str, dt.datetime]],
                                      now: dt.datetime) -> None:  # fmt: skip
        time = self.dialect.time
        async with self._tx() as tx:
            await tx.fetch("DELETE FROM sieve_duplicates WHERE expires <= ?", (time(now),))
            for handle, value, expires in marks:
                await tx.fetch(
                    "INSERT INTO sieve_duplicates (account_id, handle, value, expires)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT (account_id, handle, value) DO UPDATE"
                    " SET expires = excluded.expires",
                    (account_id, storable_text(handle), storable_text(value), time(expires)))
