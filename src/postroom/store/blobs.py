"""Message bodies on disk, written durably before anyone acknowledges them.

Owns the blob directory under `DATA_DIR/blobs`. A blob is written to `tmp/`, fsynced,
renamed into a two-level fan-out (`ab/abcdef…`), and the directory fsynced — only then does
`BlobWriter.commit()` return its id (ARCHITECTURE.md rule 10). Blobs are immutable; a blob id
is random, never derived from content, so two deliveries of the same bytes stay separate.

`BlobStore` is the interface; `FileBlobStore` is the SQLite default, and
`store/pgblobs.py` keeps bodies in PostgreSQL for several nodes (an object store can follow).
Readers that need a file call `await local_path(id)`: a remote store fetches it first.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path
from typing import IO, Protocol


class BlobWriter(Protocol):
    size: int

    async def write(self, data: bytes) -> None: ...
    async def commit(self) -> str: ...
    async def abort(self) -> None: ...


class BlobStore(Protocol):
    def writer(self) -> BlobWriter: ...
    async def put(self, data: bytes) -> str: ...
    async def read(self, blob_id: str) -> bytes: ...
    def path(self, blob_id: str) -> Path: ...
    async def local_path(self, blob_id: str) -> Path:
        """A local file holding the blob (fetched first by stores that keep it remotely)."""
        ...

    async def delete(self, blob_id: str) -> None: ...


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileBlobWriter:
    """Streams one message into a temp file; buffered so small writes stay cheap."""

    _FLUSH_AT = 256 * 1024

    def __init__(self, store: FileBlobStore) -> None:
        self._store = store
        self._blob_id = secrets.token_hex(16)
        self._tmp = store.root / "tmp" / self._blob_id
        self._file: IO[bytes] | None = None  # opened by the first drain, off the event loop
        self._pending: list[bytes] = []
        self._pending_size = 0
        self.size = 0

    async def write(self, data: bytes) -> None:
        self._pending.append(data)
        self._pending_size += len(data)
        self.size += len(data)
        if self._pending_size >= self._FLUSH_AT:
            await asyncio.to_thread(self._drain)

    def _drain(self) -> None:
        if self._file is None:
            self._file = open(self._tmp, "wb")  # noqa: SIM115 - closed in commit/abort
        self._file.write(b"".join(self._pending))
        self._pending.clear()
        self._pending_size = 0

    async def commit(self) -> str:
        await asyncio.to_thread(self._commit_sync)
        return self._blob_id

    def _commit_sync(self) -> None:
        self._drain()
        assert self._file is not None  # _drain opened it
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        final = self._store.path(self._blob_id)
        self._store.ensure_dir(final.parent)
        try:
            os.replace(self._tmp, final)
        except FileNotFoundError:  # the directory was removed behind our back
            self._store.ensure_dir(final.parent, again=True)
            os.replace(self._tmp, final)
        _fsync_dir(final.parent)

    async def abort(self) -> None:
        if self._file is not None:
            self._file.close()
        self._tmp.unlink(missing_ok=True)


class FileBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._made_dirs: set[Path] = set()  # fan-out directories known to exist

    def ensure_dir(self, directory: Path, *, again: bool = False) -> None:
        """Create a fan-out directory once; later blobs skip the mkdir system call."""
        if again or directory not in self._made_dirs:
            directory.mkdir(exist_ok=True)
            self._made_dirs.add(directory)

    def prepare(self) -> None:
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)

    def writer(self) -> FileBlobWriter:
        return FileBlobWriter(self)

    async def put(self, data: bytes) -> str:
        writer = self.writer()
        await writer.write(data)
        return await writer.commit()

    def path(self, blob_id: str) -> Path:
        if len(blob_id) < 3 or not blob_id.isalnum():
            raise ValueError(f"bad blob id {blob_id!r}")
        return self.root / blob_id[:2] / blob_id

    async def read(self, blob_id: str) -> bytes:
        return await asyncio.to_thread(self.path(blob_id).read_bytes)

    async def local_path(self, blob_id: str) -> Path:
        return self.path(blob_id)

    async def delete(self, blob_id: str) -> None:
        self.path(blob_id).unlink(missing_ok=True)
