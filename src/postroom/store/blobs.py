"""Message bodies on disk, written durably before anyone acknowledges them.

Owns the blob directory under `DATA_DIR/blobs`. A blob is written to `tmp/`, fsynced,
renamed into a two-level fan-out (`ab/abcdef…`), and the directory fsynced — only then does
`BlobWriter.commit()` return its id (ARCHITECTURE.md rule 10). Blobs are immutable; a blob id
is random, never derived from content, so two deliveries of the same bytes stay separate.

`BlobStore` is the interface; `FileBlobStore` is the SQLite default, and
`store/pgblobs.py` keeps bodies in PostgreSQL for several nodes (an object store can follow).
Readers that go through many blobs call `await opener(ids)` once, then open each on a
worker thread: a remote store fetches them first, a database store reads them in one query.

A temp file never outlives a failed write (issue 25: a full disk must not stay full of
half-written bodies): every write that fails removes its own temp file at once, and temp
files older than `STALE_TMP_SECONDS` (a crashed process's, or another's that died) are
swept while mail is being written, at most every `SWEEP_EVERY_SECONDS`, not only when
`serve` starts. OSErrors that mean "no space" or "I/O error" leave as the storage errors of
store/errors.py (StorageFull, StorageFailure), logged once a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Protocol

from postroom.store.errors import raise_storage_failure

log = logging.getLogger("postroom.store")

# A temp file this old belongs to no write in progress: bodies are written from memory
# or from a local spool file, in seconds.
STALE_TMP_SECONDS = 3600.0
SWEEP_EVERY_SECONDS = 600.0


class BlobWriter(Protocol):
    size: int

    async def write(self, data: bytes) -> None: ...
    async def commit(self) -> str: ...
    async def abort(self) -> None: ...


# Opens one blob of those an `opener` call was given, for reading on a worker thread;
# raises FileNotFoundError for a blob that is gone (expunged since the caller looked).
BlobOpener = Callable[[str], IO[bytes]]


class BlobStore(Protocol):
    def writer(self) -> BlobWriter: ...
    async def put(self, data: bytes, *, blob_id: str | None = None) -> str:
        """Store `data` durably; under `blob_id` (from `new_id`) when given."""
        ...

    def new_id(self, size: int) -> str:
        """An id for a blob of `size` bytes that `put` or `Store.append_message(...,
        body=)` will write (a store may keep small and large bodies in different places)."""
        ...

    async def read(self, blob_id: str, *, limit: int | None = None) -> bytes:
        """The blob's bytes (the first `limit` of them); FileNotFoundError when gone."""
        ...

    async def opener(self, blob_ids: Iterable[str]) -> BlobOpener:
        """Get these blobs ready to open off the event loop (a remote or database store
        fetches them here); readers of many blobs then take one thread hop, not one each."""
        ...

    def in_memory(self, blob_id: str) -> bool:
        """True when `opener` holds the blob's bytes in memory, and they are at most a
        small body's (64 KiB): opening and reading it never blocks, so a reader may do
        it on the event loop instead of taking a thread hop."""
        ...

    async def delete(self, blob_id: str) -> None: ...


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_file(path: Path, limit: int | None = None) -> bytes:
    with path.open("rb") as handle:
        return handle.read() if limit is None else handle.read(limit)


class FileBlobWriter:
    """Streams one message into a temp file; buffered so small writes stay cheap."""

    _FLUSH_AT = 256 * 1024

    def __init__(self, store: FileBlobStore) -> None:
        self._store = store
        self._blob_id = store.new_id()
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
            try:
                await asyncio.to_thread(self._drain)
            except OSError as error:
                await asyncio.to_thread(self._discard)  # no temp file outlives a failure
                raise_storage_failure(error)
                raise

    def _drain(self) -> None:
        if self._file is None:
            self._file = open(self._tmp, "wb")  # noqa: SIM115 - closed in commit/abort
        self._file.write(b"".join(self._pending))
        self._pending.clear()
        self._pending_size = 0

    async def commit(self) -> str:
        try:
            await asyncio.to_thread(self._commit_sync)
        except OSError as error:
            raise_storage_failure(error)
            raise
        return self._blob_id

    def _commit_sync(self) -> None:
        try:
            self._drain()
            assert self._file is not None  # _drain opened it
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            directory = self._store.install(self._blob_id, self._tmp)
        except BaseException:
            self._discard()
            raise
        fsync_dir(directory)
        self._store.sweep_if_due()

    async def abort(self) -> None:
        await asyncio.to_thread(self._discard)

    def _discard(self) -> None:
        """Close and remove the temp file; closing flushes, which fails on a full disk."""
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
        self._tmp.unlink(missing_ok=True)


class FileBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._made_dirs: set[Path] = set()  # fan-out directories known to exist
        self._last_sweep = time.monotonic()  # serve's start cleared tmp/ (app.py)

    def ensure_dir(self, directory: Path, *, again: bool = False) -> None:
        """Create a fan-out directory once; later blobs skip the mkdir system call."""
        if again or directory not in self._made_dirs:
            directory.mkdir(exist_ok=True)
            self._made_dirs.add(directory)

    def prepare(self) -> None:
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)

    def new_id(self, size: int = 0) -> str:  # one kind of blob: the size changes nothing
        return secrets.token_hex(16)

    def write_now(self, blob_id: str, data: bytes) -> Path:
        """Write a whole blob on the calling thread (blocking): fsynced and renamed into
        place. Returns the directory still to fsync, which a caller writing several
        blobs does once per directory (store/sqlitebatch.py)."""
        self.path(blob_id)  # refuses an id that is not a plain name before anything is written
        tmp = self.root / "tmp" / blob_id
        try:
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            directory = self.install(blob_id, tmp)
        except BaseException:
            tmp.unlink(missing_ok=True)  # no temp file outlives a failed write
            raise
        self.sweep_if_due()
        return directory

    def sweep_if_due(self) -> None:
        """Remove stale temp files (module doc) when the last sweep is old enough;
        blocking, so called on the threads that write blobs."""
        now = time.monotonic()
        if now - self._last_sweep < SWEEP_EVERY_SECONDS:
            return
        self._last_sweep = now
        removed = self.sweep_tmp(STALE_TMP_SECONDS)
        if removed:
            log.warning("removed %d stale temp file(s) from %s", removed, self.root / "tmp")

    def sweep_tmp(self, older_than: float) -> int:
        """Remove temp files last modified more than `older_than` seconds ago."""
        cutoff, removed = time.time() - older_than, 0
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.root / "tmp"):
                with contextlib.suppress(FileNotFoundError):
                    if entry.stat().st_mtime < cutoff:
                        os.unlink(entry.path)
                        removed += 1
        return removed

    def install(self, blob_id: str, tmp: Path) -> Path:
        """Rename a written, fsynced temp file into the fan-out; returns its directory."""
        final = self.path(blob_id)
        self.ensure_dir(final.parent)
        try:
            os.replace(tmp, final)
        except FileNotFoundError:  # the directory was removed behind our back
            self.ensure_dir(final.parent, again=True)
            os.replace(tmp, final)
        return final.parent

    def writer(self) -> FileBlobWriter:
        return FileBlobWriter(self)

    async def put(self, data: bytes, *, blob_id: str | None = None) -> str:
        blob_id = blob_id or self.new_id()
        try:
            await asyncio.to_thread(self._put_now, blob_id, data)
        except OSError as error:
            raise_storage_failure(error)
            raise
        return blob_id

    def _put_now(self, blob_id: str, data: bytes) -> None:
        fsync_dir(self.write_now(blob_id, data))

    def path(self, blob_id: str) -> Path:
        if len(blob_id) < 3 or not blob_id.isalnum():
            raise ValueError(f"bad blob id {blob_id!r}")
        return self.root / blob_id[:2] / blob_id

    async def read(self, blob_id: str, *, limit: int | None = None) -> bytes:
        return await asyncio.to_thread(read_file, self.path(blob_id), limit)

    async def opener(self, blob_ids: Iterable[str]) -> BlobOpener:
        return self.open

    def in_memory(self, blob_id: str) -> bool:
        return False  # every blob is a file

    def open(self, blob_id: str) -> IO[bytes]:
        """The blob's file, open for reading (blocking: call it off the event loop)."""
        return self.path(blob_id).open("rb")

    async def delete(self, blob_id: str) -> None:
        self.path(blob_id).unlink(missing_ok=True)
