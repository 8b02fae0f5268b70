"""Disabled accounts (issue 21): the `AccountStateStore` methods, written once for both
backends. One row per disabled account; enabling deletes it."""

from __future__ import annotations

from postroom.store.sql.base import SqlBackend


class AccountStateSql(SqlBackend):
    """Statements of the `AccountStateStore` role."""

    async def set_account_disabled(self, account_id: int, is_disabled: bool) -> bool:
        async with self._tx() as tx:
            if is_disabled:
                rows = await tx.fetch(
                    "INSERT INTO disabled_accounts (account_id) VALUES (?)"
                    " ON CONFLICT (account_id) DO NOTHING RETURNING account_id",
                    (account_id,))
            else:
                rows = await tx.fetch(
                    "DELETE FROM disabled_accounts WHERE account_id = ? RETURNING account_id",
                    (account_id,))
        return bool(rows)

    async def is_account_disabled(self, account_id: int) -> bool:
        rows = await self._point_rows(
            "SELECT 1 FROM disabled_accounts WHERE account_id = ?", (account_id,))
        return bool(rows)

    async def list_disabled_accounts(self) -> list[str]:
        rows = await self._rows(
            "SELECT a.address FROM disabled_accounts d JOIN accounts a ON a.id = d.account_id"
            " ORDER BY a.address" + self.dialect.collate)
        return [row[0] for row in rows]
