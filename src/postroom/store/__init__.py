"""The store package's face: the roles everything above `store/` depends on, and
`open_store`, the one place a backend is chosen and opened (serve, the CLI, tests).

Layout: `api.py` (roles and rows), `sql/` (the SQL both backends share, written once
against a transaction and a dialect), `sqlite.py` and `postgres.py` (what truly differs:
SQLite's WAL, group commit and on-loop point reads; PostgreSQL's pool, row locks,
LISTEN/NOTIFY), the blob stores, the change feed and the migrations.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from postroom.errors import ConfigError
from postroom.store.api import Directory, GuardStore, Importer, Mailstore, QueueStore, Store

if TYPE_CHECKING:
    from postroom.config import Config
    from postroom.store.blobs import BlobStore
    from postroom.store.changes import ChangeFeed

__all__ = ["Directory", "GuardStore", "Importer", "Mailstore", "QueueStore", "Store",
           "open_store"]


async def open_store(config: Config, feed: ChangeFeed) -> tuple[Store, BlobStore]:
    """The STORAGE backend, opened: SQLite + files under DATA_DIR, or PostgreSQL holding
    everything (bodies too, cached per node under DATA_DIR/blob-cache)."""
    if config.storage == "postgresql":
        try:
            from postroom.store.postgres import open_postgres
        except ImportError as error:  # psycopg is the optional extra `postroom[postgres]`
            raise ConfigError("config: STORAGE=postgresql needs psycopg: "
                              "pip install 'postroom[postgres]'") from error
        return await open_postgres(config.database_url, feed, config.data_dir / "blob-cache",
                                   data_dir=config.data_dir)
    from postroom.store.sqlite import sqlite_store

    # data_dir: the database must be DATA_DIR's install (issue 25, store/migrate.py); the
    # admin commands open it here too, so none of them creates a blank one over old mail.
    store, blobs = sqlite_store(config.db_path, config.data_dir / "blobs", feed,
                                data_dir=config.data_dir)
    await store.open()
    return store, blobs
