"""Message bodies for the SQLite backend: small ones in the database, large ones as files.

Owns where a body lives when the store is SQLite, and the SQL that keeps `blob_data`
(migration 0006) in step with the rows naming its blobs. `SqliteBlobStore` is the
`BlobStore` app.py hands to sessions.

A body of at most INLINE_LIMIT bytes is a row of `blob_data`, inserted in the same
transaction as the message (or queue) row that names it: it is durable with that
transaction's one WAL fsync, shared by the whole group-commit batch. A larger body is a
`FileBlobStore` file (fsynced, renamed, directory fsynced). Why (issue 8): at 4 KB, creating,
fsyncing and renaming a file per delivery cost a quarter of the CPU per message, and each
file fsync forced its own ext4 journal commit (docs/decisions/0025-small-bodies-in-sqlite.md).
Above the limit the file is cheaper: WAL content is written
twice (the log, then the checkpoint), and a big row would sit in memory on the event loop.

Invariants:
- Where a blob lives is fixed by its id: inline ids start with INLINE_MARK, file ids are
  hex (`FileBlobStore.new_id`). No query decides it; a mailbox may hold both kinds.
- An inline blob's row goes in the transaction that drops its last reference (sqlite.py,
  sqlitebatch.py), before that COMMIT: there is never a committed reference to a missing
  row, and a crash leaks nothing.
- Reading one blob is a point read on the event loop (at most INLINE_LIMIT bytes); many
  blobs are one query on the store's reader thread (`opener`).
"""

from __future__ import annotations

import io
import secrets
from collections.abc import Iterable
from typing import IO, Protocol

from postroom.store.blobs import BlobOpener, FileBlobStore, FileBlobWriter

INLINE_LIMIT = 64 * 1024
INLINE_MARK = "i"  # never a hex digit: file ids cannot start with it

# A blob may go once no message, no queue entry and no JMAP upload (migration 0027)
# refers to it. The id twice (numbered parameters: the upload check reuses ?1, so every
# caller passes the same two values it always did).
BLOB_IN_USE_SQL = ("SELECT EXISTS (SELECT 1 FROM messages WHERE blob_id = ?1)"
                   " OR EXISTS (SELECT 1 FROM queue WHERE blob_id = ?2)"
                   " OR EXISTS (SELECT 1 FROM jmap_uploads WHERE blob_id = ?1)")  # fmt: skip
# The id three times: the row, then BLOB_IN_USE_SQL's checks (the same condition).
DELETE_INLINE_IF_UNUSED_SQL = ("DELETE FROM blob_data WHERE id = ?1"
                               " AND NOT EXISTS (SELECT 1 FROM messages WHERE blob_id = ?2)"
                               " AND NOT EXISTS (SELECT 1 FROM queue WHERE blob_id = ?3)"
                               " AND NOT EXISTS (SELECT 1 FROM jmap_uploads WHERE blob_id = ?1)")
INSERT_INLINE_SQL = "INSERT INTO blob_data (id, data) VALUES (?, ?)"


def is_inline(blob_id: str) -> bool:
    return blob_id.startswith(INLINE_MARK)


def new_blob_id(size: int) -> str:
    """An id for a body of `size` bytes: its first character says where it will live."""
    if size <= INLINE_LIMIT:
        return INLINE_MARK + secrets.token_hex(16)
    return secrets.token_hex(16)


class InlineBlobRows(Protocol):
    """What SqliteBlobStore needs from the SQLite store: the `blob_data` rows."""

    async def put_inline_blob(self, blob_id: str, data: bytes) -> None: ...
    async def read_inline_blobs(self, blob_ids: list[str]) -> dict[str, bytes]: ...
    async def delete_inline_blob(self, blob_id: str) -> None: ...


class SqliteBlobStore:
    """`BlobStore` of the SQLite backend: routes each id to `blob_data` or to files."""

    def __init__(self, files: FileBlobStore, rows: InlineBlobRows) -> None:
        self.files = files
        self._rows = rows

    def new_id(self, size: int) -> str:
        return new_blob_id(size)

    def writer(self) -> FileBlobWriter:
        return self.files.writer()  # streamed bodies are the large ones: files

    async def put(self, data: bytes, *, blob_id: str | None = None) -> str:
        blob_id = blob_id or self.new_id(len(data))
        if not is_inline(blob_id):
            return await self.files.put(data, blob_id=blob_id)
        await self._rows.put_inline_blob(blob_id, data)
        return blob_id

    async def read(self, blob_id: str, *, limit: int | None = None) -> bytes:
        if not is_inline(blob_id):
            return await self.files.read(blob_id, limit=limit)
        data = _found((await self._rows.read_inline_blobs([blob_id])).get(blob_id), blob_id)
        return data if limit is None else data[:limit]

    def in_memory(self, blob_id: str) -> bool:
        return is_inline(blob_id)  # a blob_data row, read by `opener`: ≤ INLINE_LIMIT

    async def opener(self, blob_ids: Iterable[str]) -> BlobOpener:
        loaded = await self._rows.read_inline_blobs([i for i in set(blob_ids) if is_inline(i)])

        def open_blob(blob_id: str) -> IO[bytes]:
            if not is_inline(blob_id):
                return self.files.open(blob_id)
            return io.BytesIO(_found(loaded.get(blob_id), blob_id))

        return open_blob

    async def delete(self, blob_id: str) -> None:
        if is_inline(blob_id):
            await self._rows.delete_inline_blob(blob_id)
        else:
            await self.files.delete(blob_id)


def _found(data: bytes | None, blob_id: str) -> bytes:
    if data is None:
        # The error a missing file gives, so readers handle every kind of blob alike.
        raise FileNotFoundError(2, "no such blob", blob_id)
    return data
