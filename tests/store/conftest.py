"""Fixtures for the store contract suite: every test runs once per backend.

To add a backend, append its name to BACKENDS and teach `make_store` to build it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from postroom.store.api import Store
from postroom.store.blobs import BlobStore, FileBlobStore
from postroom.store.changes import ChangeFeed
from postroom.store.sqlite import SqliteStore
from postroom.store.sqliteblobs import SqliteBlobStore
from tests.postgres.pgserver import new_database

BACKENDS = ["sqlite", "postgresql"]

StoreMaker = Callable[[], Store]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def feed() -> ChangeFeed:
    return ChangeFeed()


@pytest.fixture
def files(tmp_path: Path) -> FileBlobStore:
    blob_store = FileBlobStore(tmp_path / "blobs")
    blob_store.prepare()
    return blob_store


@pytest.fixture
def database_url(backend: str) -> Iterator[str]:
    """A fresh PostgreSQL database for the postgresql backend ("" for the others)."""
    if backend != "postgresql":
        yield ""
        return
    with new_database() as url:
        yield url


@pytest.fixture
def make_store(
    backend: str, tmp_path: Path, files: FileBlobStore, feed: ChangeFeed, database_url: str
) -> StoreMaker:
    """Builds an unopened store over the same data each call (for close + reopen tests)."""

    def make() -> Store:
        if backend == "sqlite":
            return SqliteStore(tmp_path / "db" / "postroom.sqlite3", files, feed)
        if backend == "postgresql":
            from postroom.store.postgres import PostgresStore

            return PostgresStore(database_url, files, feed)
        raise AssertionError(f"unknown backend {backend}")

    return make


@pytest.fixture
async def store(make_store: StoreMaker) -> AsyncIterator[Store]:
    opened = make_store()
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def blobs(backend: str, store: Store, files: FileBlobStore) -> BlobStore:
    """The bodies as the backend's runtime keeps them: for SQLite, small ones as rows of
    the store (store/sqliteblobs.py) and large ones in `files`."""
    if backend == "sqlite":
        assert isinstance(store, SqliteStore)
        return SqliteBlobStore(files, store)
    return files
