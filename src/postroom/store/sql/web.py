"""The web console's sessions, admin role and audit log (issue 21): the `WebStore`
methods, written once for both backends (store/web_api.py holds the invariants)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from postroom.store.sql.base import SqlBackend
from postroom.store.web_api import AuditEntry, WebSession

_SESSION = ("SELECT token_hash, address, created, authenticated, expires,"
            " second_factor_pending, client FROM web_sessions")
_AUDIT = "SELECT at, actor, action, target, detail, client FROM audit_log"


class WebSql(SqlBackend):
    """Statements of the `WebStore` role."""

    async def add_web_session(self, session: WebSession) -> None:
        time = self.dialect.time
        async with self._tx() as tx:
            # Expired sessions go as new ones come (indexed): the table stays the live set.
            await tx.fetch("DELETE FROM web_sessions WHERE expires <= ?",
                           (time(session.created),))
            await tx.fetch(
                "INSERT INTO web_sessions (token_hash, account_id, created, authenticated,"
                " expires, second_factor_pending, client) SELECT ?, id, ?, ?, ?, ?, ?"
                " FROM accounts WHERE address = ?",
                (session.token_hash, time(session.created), time(session.authenticated),
                 time(session.expires), int(session.second_factor_pending), session.client,
                 session.address))

    async def web_session(self, token_hash: str, now: dt.datetime) -> WebSession | None:
        row = await self._point_row(
            "SELECT s.token_hash, a.address, s.created, s.authenticated, s.expires,"
            " s.second_factor_pending, s.client FROM web_sessions s"
            " JOIN accounts a ON a.id = s.account_id WHERE s.token_hash = ? AND s.expires > ?",
            (token_hash, self.dialect.time(now)))
        return None if row is None else self._session(row)

    def _session(self, row: Any) -> WebSession:
        read = self.dialect.read_time
        return WebSession(row[0], row[1], read(row[2]), read(row[3]), read(row[4]),
                          bool(row[5]), row[6] or "")

    async def update_web_session(self, token_hash: str, authenticated: dt.datetime,
                                 expires: dt.datetime, second_factor_pending: bool) -> bool:
        time = self.dialect.time
        async with self._tx() as tx:
            rows = await tx.fetch(
                "UPDATE web_sessions SET authenticated = ?, expires = ?,"
                " second_factor_pending = ? WHERE token_hash = ? RETURNING token_hash",
                (time(authenticated), time(expires), int(second_factor_pending), token_hash))
        return bool(rows)

    async def delete_web_session(self, token_hash: str) -> bool:
        async with self._tx() as tx:
            rows = await tx.fetch("DELETE FROM web_sessions WHERE token_hash = ?"
                                  " RETURNING token_hash", (token_hash,))
        return bool(rows)

    async def delete_web_sessions_of(self, address: str, keep: str = "") -> int:
        now = self.dialect.time(dt.datetime.now(dt.UTC))
        async with self._tx() as tx:
            await tx.fetch("DELETE FROM web_sessions WHERE expires <= ?", (now,))
            rows = await tx.fetch(
                "DELETE FROM web_sessions WHERE token_hash <> ? AND account_id IN"
                " (SELECT id FROM accounts WHERE address = ?) RETURNING token_hash",
                (keep, address))
        return len(rows)

    async def is_admin(self, address: str) -> bool:
        row = await self._point_row("SELECT is_admin FROM accounts WHERE address = ?",
                                    (address,))
        return bool(row and row[0])

    async def set_admin(self, address: str, is_admin: bool) -> bool:
        async with self._tx() as tx:
            rows = await tx.fetch("UPDATE accounts SET is_admin = ? WHERE address = ?"
                                  " RETURNING id", (int(is_admin), address))
        return bool(rows)

    async def list_admins(self) -> list[str]:
        rows = await self._rows("SELECT address FROM accounts WHERE is_admin = 1"
                                " ORDER BY address" + self.dialect.collate)
        return [row[0] for row in rows]

    async def add_audit_entry(self, entry: AuditEntry) -> None:
        async with self._tx() as tx:
            await tx.fetch(
                "INSERT INTO audit_log (at, actor, action, target, detail, client)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (self.dialect.time(entry.at), entry.actor, entry.action, entry.target,
                 entry.detail, entry.client))

    async def audit_entries(self, since: dt.datetime | None = None, actor: str | None = None,
                            limit: int = 1000) -> list[AuditEntry]:
        where, params = [], []
        if since is not None:
            where.append("at >= ?")
            params.append(self.dialect.time(since))
        if actor is not None:
            where.append("actor = ?")
            params.append(actor)
        sql = _AUDIT + (" WHERE " + " AND ".join(where) if where else "")
        rows = await self._rows(sql + " ORDER BY id DESC LIMIT ?", (*params, limit))
        read = self.dialect.read_time
        return [AuditEntry(read(r[0]), r[1], r[2], r[3], r[4], r[5]) for r in reversed(rows)]
