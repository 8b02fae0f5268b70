"""JMAP uploads and blob ownership (issue 23): the `JmapUploadStore` methods, written once
for both backends (store/jmapuploads_api.py states the invariants; migration 0027)."""

from __future__ import annotations

import datetime as dt

from postroom.store.jmapuploads_api import JmapUpload
from postroom.store.sql.base import SqlBackend

_HOLDS_BLOB = (
    "SELECT EXISTS (SELECT 1 FROM jmap_uploads WHERE account_id = ? AND blob_id = ?)"
    " OR EXISTS (SELECT 1 FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id"
    " WHERE m.blob_id = ? AND b.account_id = ?)"
)
_META_FOR_BLOB = (
    "SELECT m.meta FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id"
    " WHERE m.blob_id = ? AND b.account_id = ? LIMIT 1"
)


class JmapUploadSql(SqlBackend):
    """Statements of the `JmapUploadStore` role."""

    async def add_jmap_upload(self, upload: JmapUpload) -> None:
        async with self._tx() as tx:
            await tx.fetch("INSERT INTO jmap_uploads (account_id, blob_id, type, size, created)"
                           " VALUES (?, ?, ?, ?, ?)",
                           (upload.account_id, upload.blob_id, upload.type, upload.size,
                            self.dialect.time(upload.created)))

    async def jmap_upload(self, account_id: int, blob_id: str) -> JmapUpload | None:
        row = await self._row("SELECT account_id, blob_id, type, size, created"
                              " FROM jmap_uploads WHERE account_id = ? AND blob_id = ?"
                              " ORDER BY id DESC LIMIT 1", (account_id, blob_id))
        if row is None:
            return None
        return JmapUpload(int(row[0]), str(row[1]), str(row[2]), int(row[3]),
                          self.dialect.read_time(row[4]))

    async def jmap_upload_bytes(self, account_id: int, since: dt.datetime) -> int:
        row = await self._row("SELECT COALESCE(SUM(size), 0) FROM jmap_uploads"
                              " WHERE account_id = ? AND created >= ?",
                              (account_id, self.dialect.time(since)))
        return int(row[0]) if row is not None else 0

    async def expire_jmap_uploads(self, before: dt.datetime, limit: int) -> int:
        async with self._tx() as tx:
            rows = await tx.fetch("SELECT id, blob_id FROM jmap_uploads WHERE created < ?"
                                  " ORDER BY created, id LIMIT ?",
                                  (self.dialect.time(before), limit))
            if rows:
                await tx.execute_many("DELETE FROM jmap_uploads WHERE id = ?",
                                      [(row[0],) for row in rows])
            tx.blobs.update(str(row[1]) for row in rows)  # released after COMMIT if unused
        return len(rows)

    async def account_holds_blob(self, account_id: int, blob_id: str) -> bool:
        row = await self._row(_HOLDS_BLOB, (account_id, blob_id, blob_id, account_id))
        return bool(row and row[0])

    async def message_meta_for_blob(self, account_id: int, blob_id: str) -> str | None:
        row = await self._row(_META_FOR_BLOB, (blob_id, account_id))
        return None if row is None else str(row[0])
