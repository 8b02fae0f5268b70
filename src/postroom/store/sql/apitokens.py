"""API tokens (issue 23): the `ApiTokenStore` methods, written once for both backends
(store/apitokens_api.py states the invariants; migration 0028)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from postroom.store.apitokens_api import ApiToken
from postroom.store.sql.base import SqlBackend

_COLUMNS = "id, account_id, name, token_hash, created, last_used"


class ApiTokenSql(SqlBackend):
    """Statements of the `ApiTokenStore` role."""

    def _api_token(self, row: Sequence[Any]) -> ApiToken:
        read = self.dialect.read_time
        return ApiToken(int(row[0]), int(row[1]), str(row[2]), str(row[3]), read(row[4]),
                        None if row[5] is None else read(row[5]))

    async def list_api_tokens(self, account_id: int) -> list[ApiToken]:
        rows = await self._rows(f"SELECT {_COLUMNS} FROM api_tokens WHERE account_id = ?"
                                " ORDER BY name" + self.dialect.collate, (account_id,))
        return [self._api_token(row) for row in rows]

    async def add_api_token(self, account_id: int, name: str, token_hash: str,
                            now: dt.datetime) -> ApiToken | None:
        async with self._tx() as tx:
            taken = await tx.fetch("SELECT id FROM api_tokens WHERE account_id = ?"
                                   " AND name = ?" + self.dialect.for_update,
                                   (account_id, name))
            if taken:
                return None
            row = await tx.fetch_one(
                "INSERT INTO api_tokens (account_id, name, token_hash, created)"
                f" VALUES (?, ?, ?, ?) RETURNING {_COLUMNS}",
                (account_id, name, token_hash, self.dialect.time(now)))
        return self._api_token(row)

    async def api_token_by_hash(self, token_hash: str) -> ApiToken | None:
        row = await self._point_row(f"SELECT {_COLUMNS} FROM api_tokens WHERE token_hash = ?",
                                    (token_hash,))
        return None if row is None else self._api_token(row)

    async def delete_api_token(self, account_id: int, token_id: int) -> bool:
        async with self._tx() as tx:
            rows = await tx.fetch("DELETE FROM api_tokens WHERE account_id = ? AND id = ?"
                                  " RETURNING id", (account_id, token_id))
        return bool(rows)

    async def touch_api_token(self, token_id: int, now: dt.datetime) -> None:
        async with self._tx() as tx:
            await tx.fetch("UPDATE api_tokens SET last_used = ? WHERE id = ?",
                           (self.dialect.time(now), token_id))
