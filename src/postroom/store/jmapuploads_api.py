"""The `JmapUploadStore` role (issue 23): blobs uploaded over JMAP (RFC 8620 §6.1) and
which blobs an account may download (§6.2).

Owns the Protocol and its row; both backends implement it once in
`store/sql/jmapuploads.py` (migration 0027).

Invariants:
- An upload row is a reference to its blob like a message or queue row: no blob-in-use
  check releases a blob an upload row names (store/sqliteblobs.py, PostgresStore).
- `expire_jmap_uploads` deletes rows older than the cut-off and releases each blob that
  nothing else names, after COMMIT (as an expunge does).
- An account holds a blob when one of its uploads or one of the messages in its
  mailboxes names it; nothing here answers for another account's blob.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class JmapUpload:
    account_id: int
    blob_id: str
    type: str  # the media type the client declared (Content-Type)
    size: int
    created: dt.datetime


class JmapUploadStore(Protocol):
    async def add_jmap_upload(self, upload: JmapUpload) -> None:
        """Record an upload whose blob is already written."""
        ...

    async def jmap_upload(self, account_id: int, blob_id: str) -> JmapUpload | None:
        """The account's upload of that blob (the newest, if uploaded twice)."""
        ...

    async def jmap_upload_bytes(self, account_id: int, since: dt.datetime) -> int:
        """Bytes the account uploaded since `since` (uploads not yet swept)."""
        ...

    async def expire_jmap_uploads(self, before: dt.datetime, limit: int) -> int:
        """Delete up to `limit` uploads created before `before`, oldest first, releasing
        their blobs when nothing else refers to them; the number deleted."""
        ...

    async def account_holds_blob(self, account_id: int, blob_id: str) -> bool:
        """Does an upload of the account, or a message in one of its mailboxes, name
        that blob?"""
        ...

    async def message_meta_for_blob(self, account_id: int, blob_id: str) -> str | None:
        """The stored meta (`NewMessage.meta`) of a message of the account with that
        blob; None when the account has none."""
        ...
