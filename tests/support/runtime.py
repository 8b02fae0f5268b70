"""A Runtime over a fresh SQLite store, for tests that drive one protocol server directly."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from postroom.accounts.service import AccountService
from postroom.config import Config
from postroom.dns.live import LiveResolver
from postroom.runtime import Runtime
from postroom.store.blobs import FileBlobStore
from postroom.store.changes import ChangeFeed
from postroom.store.sqlite import SqliteStore
from postroom.tls.contexts import TlsContexts


@contextlib.asynccontextmanager
async def open_runtime(config: Config) -> AsyncIterator[Runtime]:
    blobs = FileBlobStore(config.data_dir / "blobs")
    blobs.prepare()
    feed = ChangeFeed()
    store = SqliteStore(config.db_path, blobs, feed)
    await store.open()
    try:
        yield Runtime(config=config, store=store, blobs=blobs, feed=feed,
                      accounts=AccountService(store),
                      tls=TlsContexts(config.cert_path, config.key_path),
                      resolver=LiveResolver(config.nameservers))
    finally:
        await store.close()
