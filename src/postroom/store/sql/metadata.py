"""IMAP METADATA (RFC 5464): per-mailbox and server annotations (issue 17, migration 0012).

`MetadataSql`: the `MetadataStore` methods, written once for both backends. Server entries
have a NULL `mailbox_id`; `coalesce(mailbox_id, 0)` is how the unique index (and so every
lookup here) names both kinds alike (mailbox ids start at 1).
"""

from __future__ import annotations

from collections.abc import Sequence

from postroom.store.metadata_api import MetadataEntry
from postroom.store.sql.base import SqlBackend

_SCOPE = "account_id = ? AND coalesce(mailbox_id, 0) = ?"
# RENAME INBOX (store/sql/mailboxes.py): the new mailbox takes a copy of INBOX's entries.
COPY_MAILBOX_METADATA = ("INSERT INTO metadata (account_id, mailbox_id, name, value)"
                         " SELECT account_id, ?, name, value FROM metadata WHERE mailbox_id = ?")


class MetadataSql(SqlBackend):
    """Statements of the `MetadataStore` role."""

    async def list_metadata(self, account_id: int, mailbox_id: int | None
                            ) -> list[MetadataEntry]:  # fmt: skip
        rows = await self._rows("SELECT name, value FROM metadata WHERE " + _SCOPE
                                + " ORDER BY name", (account_id, mailbox_id or 0))  # fmt: skip
        return [MetadataEntry(str(row[0]), bytes(row[1])) for row in rows]

    async def set_metadata(self, account_id: int, mailbox_id: int | None,
                           changes: Sequence[tuple[str, bytes | None]]) -> None:  # fmt: skip
        async with self._tx() as tx:
            if mailbox_id is not None:
                await self._locked_mailbox(tx, mailbox_id)  # NotFound once it is deleted
            for name, value in changes:
                await tx.fetch("DELETE FROM metadata WHERE " + _SCOPE + " AND name = ?",
                               (account_id, mailbox_id or 0, name))  # fmt: skip
                if value is not None:
                    await tx.fetch("INSERT INTO metadata (account_id, mailbox_id, name, value)"
                                   " VALUES (?, ?, ?, ?)", (account_id, mailbox_id, name, value))

    async def metadata_bytes(self, account_id: int) -> int:
        row = await self._row("SELECT coalesce(sum(length(value)), 0) FROM metadata"
                              " WHERE account_id = ?", (account_id,))  # fmt: skip
        return int(row[0]) if row else 0
