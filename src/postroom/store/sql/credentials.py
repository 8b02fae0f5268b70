"""App passwords, TOTP, recovery codes and login history (issue 21): `CredentialStore`,
written once for both backends (store/credentials_api.py states the invariants)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from postroom.store.credentials_api import AppPassword, LoginRecord, TotpState
from postroom.store.sql.base import SqlBackend

_APP_COLUMNS = "id, account_id, name, tag, password_hash, created, last_used"


class CredentialSql(SqlBackend):
    """Statements of the `CredentialStore` role."""

    def _app_password(self, row: Sequence[Any]) -> AppPassword:
        read = self.dialect.read_time
        return AppPassword(int(row[0]), int(row[1]), str(row[2]), str(row[3]), str(row[4]),
                           read(row[5]), None if row[6] is None else read(row[6]))

    async def list_app_passwords(self, account_id: int) -> list[AppPassword]:
        rows = await self._rows(f"SELECT {_APP_COLUMNS} FROM app_passwords"
                                " WHERE account_id = ? ORDER BY name" + self.dialect.collate,
                                (account_id,))
        return [self._app_password(row) for row in rows]

    async def app_passwords_tagged(self, account_id: int, tag: str) -> list[AppPassword]:
        rows = await self._point_rows(f"SELECT {_APP_COLUMNS} FROM app_passwords"
                                      " WHERE account_id = ? AND tag = ?", (account_id, tag))
        return [self._app_password(row) for row in rows]

    async def add_app_password(self, account_id: int, name: str, tag: str,
                               password_hash: str, now: dt.datetime) -> AppPassword | None:
        async with self._tx() as tx:
            taken = await tx.fetch("SELECT id FROM app_passwords WHERE account_id = ?"
                                   " AND name = ?" + self.dialect.for_update,
                                   (account_id, name))
            if taken:
                return None
            row = await tx.fetch_one(
                "INSERT INTO app_passwords (account_id, name, tag, password_hash, created)"
                f" VALUES (?, ?, ?, ?, ?) RETURNING {_APP_COLUMNS}",
                (account_id, name, tag, password_hash, self.dialect.time(now)))
        return self._app_password(row)

    async def delete_app_password(self, account_id: int, password_id: int) -> bool:
        async with self._tx() as tx:
            rows = await tx.fetch("DELETE FROM app_passwords WHERE account_id = ? AND id = ?"
                                  " RETURNING id", (account_id, password_id))
        return bool(rows)

    async def totp_state(self, account_id: int) -> TotpState | None:
        row = await self._point_row("SELECT secret, is_confirmed, last_step FROM account_totp"
                                    " WHERE account_id = ?", (account_id,))
        if row is None:
            return None
        return TotpState(str(row[0]), bool(row[1]), int(row[2]))

    async def put_totp_secret(self, account_id: int, secret: str, now: dt.datetime) -> None:
        async with self._tx() as tx:
            await tx.fetch(
                "INSERT INTO account_totp (account_id, secret, is_confirmed, last_step,"
                " created) VALUES (?, ?, ?, 0, ?) ON CONFLICT (account_id) DO UPDATE SET"
                " secret = excluded.secret, is_confirmed = excluded.is_confirmed,"
                " last_step = 0, created = excluded.created",
                (account_id, secret, False, self.dialect.time(now)))

    async def confirm_totp(self, account_id: int, step: int) -> bool:
        async with self._tx() as tx:
            rows = await tx.fetch("UPDATE account_totp SET is_confirmed = ?, last_step = ?"
                                  " WHERE account_id = ? AND NOT is_confirmed"
                                  " RETURNING account_id", (True, step, account_id))
        return bool(rows)

    async def claim_totp_step(self, account_id: int, step: int) -> bool:
        async with self._tx() as tx:
            rows = await tx.fetch("UPDATE account_totp SET last_step = ? WHERE account_id = ?"
                                  " AND is_confirmed AND last_step < ? RETURNING account_id",
                                  (step, account_id, step))
        return bool(rows)

    async def delete_totp(self, account_id: int) -> bool:
        async with self._tx() as tx:
            await tx.fetch("DELETE FROM recovery_codes WHERE account_id = ?", (account_id,))
            rows = await tx.fetch("DELETE FROM account_totp WHERE account_id = ?"
                                  " RETURNING account_id", (account_id,))
        return bool(rows)

    async def put_recovery_codes(self, account_id: int, code_hashes: Sequence[str]) -> None:
        async with self._tx() as tx:
            await tx.fetch("DELETE FROM recovery_codes WHERE account_id = ?", (account_id,))
            await tx.execute_many("INSERT INTO recovery_codes (account_id, code_hash)"
                                  " VALUES (?, ?)",
                                  [(account_id, code_hash) for code_hash in code_hashes])

    async def unused_recovery_codes(self, account_id: int) -> list[tuple[int, str]]:
        rows = await self._point_rows("SELECT id, code_hash FROM recovery_codes"
                                      " WHERE account_id = ? AND used IS NULL ORDER BY id",
                                      (account_id,))
        return [(int(row[0]), str(row[1])) for row in rows]

    async def spend_recovery_code(self, account_id: int, code_id: int,
                                  now: dt.datetime) -> bool:
        async with self._tx() as tx:
            rows = await tx.fetch("UPDATE recovery_codes SET used = ? WHERE account_id = ?"
                                  " AND id = ? AND used IS NULL RETURNING id",
                                  (self.dialect.time(now), account_id, code_id))
        return bool(rows)

    async def record_logins(self, logins: Sequence[LoginRecord], keep: int,
                            app_passwords_used: Sequence[tuple[int, dt.datetime]] = ()
                            ) -> None:
        time = self.dialect.time
        async with self._tx() as tx:
            # An account deleted since the login was recorded: its rows are dropped.
            await tx.execute_many(
                "INSERT INTO login_history (account_id, at, protocol, client, credential)"
                " SELECT ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM accounts WHERE id = ?)",
                [(login.account_id, time(login.at), login.protocol, login.client,
                  login.credential, login.account_id) for login in logins])
            for account_id in sorted({login.account_id for login in logins}):
                await tx.fetch(
                    "DELETE FROM login_history WHERE account_id = ? AND id NOT IN"
                    " (SELECT id FROM login_history WHERE account_id = ?"
                    " ORDER BY at DESC, id DESC LIMIT ?)", (account_id, account_id, keep))
            if app_passwords_used:
                await tx.execute_many("UPDATE app_passwords SET last_used = ? WHERE id = ?",
                                      [(time(at), password_id)
                                       for password_id, at in app_passwords_used])

    async def recent_logins(self, account_id: int, limit: int) -> list[LoginRecord]:
        rows = await self._rows("SELECT account_id, at, protocol, client, credential"
                                " FROM login_history WHERE account_id = ?"
                                " ORDER BY at DESC, id DESC LIMIT ?", (account_id, limit))
        read = self.dialect.read_time
        return [LoginRecord(int(row[0]), read(row[1]), str(row[2]), str(row[3]), str(row[4]))
                for row in rows]
