"""Message bodies in PostgreSQL (`blobs` table, bytea), so nodes share nothing but the database.

Owns the `blobs` table (created by migrations/postgres/0001) and a node-local read cache.
A blob is buffered in memory while it is written (the SMTP size limit bounds it), then
inserted in one autocommit statement: when `commit()` returns, the row is committed, which
with PostgreSQL's default `synchronous_commit = on` means flushed to the WAL on disk
(ARCHITECTURE.md rule 10, here the database's durability instead of our fsync).

The cache: protocol code reads bodies through files (`path()` for blobs this node already
holds, `await local_path()` for any blob). The writer leaves a copy in the cache, and
`local_path` fetches a missing blob once into it. The cache is disposable: a file there is
written to a temp name and renamed, so a reader never sees half a body, and deleting the
cache directory (node stopped) loses nothing. Blobs are immutable and ids random, so a
cached copy is never stale, only possibly unneeded: `delete` removes this node's copy, and
`prune_cache` drops copies unused for a day (each use refreshes a file's mtime), which
also clears other nodes' deletions; it runs at open and every few hundred cache writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import IO, Any, Protocol

from psycopg import AsyncConnection

from postroom.store.blobs import BlobOpener, read_file

CACHE_MAX_AGE_SECONDS = 86_400.0
PRUNE_EVERY_WRITES = 500


class ConnectionSource(Protocol):
    """What pgblobs needs from the store: a pooled autocommit connection."""

    def connection(self) -> contextlib.AbstractAsyncContextManager[AsyncConnection[Any]]: ...


def _touch_if_present(path: Path) -> bool:
    """Mark a cached copy as used (prune_cache goes by mtime); False when it is missing."""
    try:
        os.utime(path)
    except FileNotFoundError:
        return False
    return True


def _check_id(blob_id: str) -> str:
    if len(blob_id) < 3 or not blob_id.isalnum():
        raise ValueError(f"bad blob id {blob_id!r}")
    return blob_id


class PgBlobWriter:
    """Collects one message in memory; `commit` inserts it and caches a local copy."""

    def __init__(self, store: PgBlobStore) -> None:
        self._store = store
        self._parts: list[bytes] = []
        self.size = 0

    async def write(self, data: bytes) -> None:
        self._parts.append(data)
        self.size += len(data)

    async def commit(self) -> str:
        data = b"".join(self._parts)
        self._parts.clear()
        return await self._store.put(data)

    async def abort(self) -> None:
        self._parts.clear()


class PgBlobStore:
    """`BlobStore` over the `blobs` table, with a node-local cache of files under `cache_dir`."""

    def __init__(self, source: ConnectionSource, cache_dir: Path, *,
                 is_caching_writes: bool = True) -> None:
        self._source = source
        self.cache_dir = cache_dir
        # Off for bulk loads (`postroom migrate`): a copy of every body is not wanted there.
        self.is_caching_writes = is_caching_writes
        self._writes = 0

    def prepare(self) -> None:
        (self.cache_dir / "tmp").mkdir(parents=True, exist_ok=True)

    def prune_cache(self, max_age: float = CACHE_MAX_AGE_SECONDS) -> int:
        """Remove cached copies not used for `max_age` seconds; returns how many went."""
        cutoff = time.time() - max_age
        removed = 0
        for path in self.cache_dir.glob("*/*"):
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
        return removed

    def writer(self) -> PgBlobWriter:
        return PgBlobWriter(self)

    def new_id(self, size: int = 0) -> str:  # one kind of blob: the size changes nothing
        return secrets.token_hex(16)

    async def put(self, data: bytes, *, blob_id: str | None = None) -> str:
        """Store `data`; under `blob_id` when given (from `new_id`)."""
        blob_id = blob_id or self.new_id()
        async with self._source.connection() as conn:
            await conn.execute("INSERT INTO blobs (id, size, data) VALUES (%s, %s, %s)",
                               (blob_id, len(data), data))  # fmt: skip
        await self.cache_written(blob_id, data)
        return blob_id

    async def cache_written(self, blob_id: str, data: bytes) -> None:
        """This node's copy of a body just committed (by `put`, or by the store's
        one-statement append, which inserts the row itself)."""
        if self.is_caching_writes:
            await asyncio.to_thread(self._cache, blob_id, data)

    async def read(self, blob_id: str, *, limit: int | None = None) -> bytes:
        cached = self.path(blob_id)
        with contextlib.suppress(FileNotFoundError):
            return await asyncio.to_thread(read_file, cached, limit)
        data = await self._fetch(blob_id)
        await asyncio.to_thread(self._cache, blob_id, data)
        return data if limit is None else data[:limit]

    async def opener(self, blob_ids: Iterable[str]) -> BlobOpener:
        """Fetches the blobs this node lacks into its cache; one that is gone is left for
        the opener to report (FileNotFoundError), like a missing file."""
        for blob_id in blob_ids:
            with contextlib.suppress(FileNotFoundError):
                await self.local_path(blob_id)
        return self.open

    def in_memory(self, blob_id: str) -> bool:
        return False  # opened from this node's cache directory

    def open(self, blob_id: str) -> IO[bytes]:
        return self.path(blob_id).open("rb")

    def path(self, blob_id: str) -> Path:
        """Where this node keeps its copy; it exists for blobs written or fetched here."""
        _check_id(blob_id)
        return self.cache_dir / blob_id[:2] / blob_id

    async def local_path(self, blob_id: str) -> Path:
        """A file holding the blob, fetched into the cache first when this node lacks it."""
        path = self.path(blob_id)
        if not await asyncio.to_thread(_touch_if_present, path):
            await asyncio.to_thread(self._cache, blob_id, await self._fetch(blob_id))
        return path

    async def delete(self, blob_id: str) -> None:
        async with self._source.connection() as conn:
            await conn.execute("DELETE FROM blobs WHERE id = %s", (_check_id(blob_id),))
        self.path(blob_id).unlink(missing_ok=True)

    async def exists(self, blob_id: str) -> bool:
        async with self._source.connection() as conn:
            cursor = await conn.execute("SELECT 1 FROM blobs WHERE id = %s", (blob_id,))
            return await cursor.fetchone() is not None

    async def iter_ids(self, batch: int = 1000) -> AsyncIterator[str]:
        """Every stored blob id, in id order (for maintenance and transfer checks)."""
        last = ""
        while True:
            async with self._source.connection() as conn:
                cursor = await conn.execute("SELECT id FROM blobs WHERE id > %s ORDER BY id"
                                            " LIMIT %s", (last, batch))  # fmt: skip
                rows = await cursor.fetchall()
            for (blob_id,) in rows:
                yield blob_id
            if len(rows) < batch:
                return
            last = rows[-1][0]

    async def _fetch(self, blob_id: str) -> bytes:
        async with self._source.connection() as conn:
            cursor = await conn.execute("SELECT data FROM blobs WHERE id = %s",
                                        (_check_id(blob_id),))  # fmt: skip
            row = await cursor.fetchone()
        if row is None:
            # The same error a missing file gives, so readers handle both stores alike.
            raise FileNotFoundError(2, "no such blob", blob_id)
        return bytes(row[0])

    def _cache(self, blob_id: str, data: bytes) -> None:
        final = self.path(blob_id)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_dir / "tmp" / f"{blob_id}.{secrets.token_hex(4)}"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)  # no fsync: the database holds the durable copy
        os.replace(tmp, final)
        self._writes += 1
        if self._writes % PRUNE_EVERY_WRITES == 0:
            self.prune_cache()
