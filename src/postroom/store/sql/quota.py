"""Per-account quotas (RFC 9208, docker-mailserver `setup quota`, issue 17).

`QuotaSql`: the `QuotaStore` methods, written once for both backends. Usage is summed over
the account's mailbox rows (counters kept by trigger, migration 0008), so every read costs
one query whatever the number of messages. PostgreSQL wants every selected column grouped
or functionally dependent on a grouped primary key: hence `GROUP BY a.id` (and `b.id`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from postroom.store.errors import NotFound
from postroom.store.quota_api import QuotaSetting, QuotaUsage
from postroom.store.sql.base import SqlBackend

_COLUMNS = ("a.id, a.address, a.quota_storage, a.quota_messages, a.quota_warned,"
            " coalesce(sum(o.message_count), 0), coalesce(sum(o.total_size), 0)")
_FOR_MAILBOX = (
    f"SELECT {_COLUMNS}, b.message_count, b.total_size FROM mailboxes b"
    " JOIN accounts a ON a.id = b.account_id"
    " JOIN mailboxes o ON o.account_id = b.account_id"
    " WHERE b.id = ? GROUP BY b.id, a.id"
)
_FOR_ACCOUNTS = (f"SELECT {_COLUMNS}, 0, 0 FROM accounts a"
                 " LEFT JOIN mailboxes o ON o.account_id = a.id")


def _usage(row: Sequence[Any]) -> QuotaUsage:
    account_id, address, storage, messages, warned, held, size, box_held, box_size = row
    setting = QuotaSetting(None if storage is None else int(storage),
                           None if messages is None else int(messages), int(warned))
    return QuotaUsage(int(account_id), address, setting, int(held), int(size), int(box_held),
                      int(box_size))


class QuotaSql(SqlBackend):
    """Statements of the `QuotaStore` role."""

    async def quota_usage(self, mailbox_id: int) -> QuotaUsage:
        row = await self._point_row(_FOR_MAILBOX, (mailbox_id,))
        if row is None:
            raise NotFound(f"no mailbox with id {mailbox_id}")
        return _usage(row)

    async def account_quota(self, account_id: int) -> QuotaUsage:
        row = await self._point_row(_FOR_ACCOUNTS + " WHERE a.id = ? GROUP BY a.id",
                                    (account_id,))  # fmt: skip
        if row is None:
            raise NotFound(f"no account with id {account_id}")
        return _usage(row)

    async def list_quotas(self) -> list[QuotaUsage]:
        rows = await self._rows(_FOR_ACCOUNTS + " GROUP BY a.id ORDER BY a.address"
                                + self.dialect.collate)  # fmt: skip
        return [_usage(row) for row in rows]

    async def set_quota(self, address: str, storage: int | None,
                        messages: int | None) -> None:  # fmt: skip
        async with self._tx() as tx:
            if not await tx.fetch(
                    "UPDATE accounts SET quota_storage = ?, quota_messages = ?,"
                    " quota_warned = 0 WHERE address = ? RETURNING id",
                    (storage, messages, address.lower())):  # fmt: skip
                raise NotFound(f"no account {address}")

    async def set_quota_warned(self, account_id: int, level: int, *, was: int) -> bool:
        async with self._tx() as tx:
            rows = await tx.fetch("UPDATE accounts SET quota_warned = ? WHERE id = ?"
                                  " AND quota_warned = ? RETURNING id",
                                  (level, account_id, was))  # fmt: skip
        return bool(rows)
