"""A Runtime over a fresh store, for tests that drive one protocol server directly.

The store is opened the way `serve` opens it (`postroom.store.open_store`), so it is the
STORAGE the config names: SQLite by default, PostgreSQL under the PostgreSQL test pass
(tests/support/storage.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from postroom.accounts.service import AccountService
from postroom.config import Config
from postroom.dns.live import LiveResolver
from postroom.runtime import Runtime
from postroom.store import open_store
from postroom.store.changes import ChangeFeed
from postroom.tls.contexts import TlsContexts


@contextlib.asynccontextmanager
async def open_runtime(config: Config) -> AsyncIterator[Runtime]:
    feed = ChangeFeed()
    store, blobs = await open_store(config, feed)
    try:
        yield Runtime(config=config, store=store, blobs=blobs, feed=feed,
                      accounts=AccountService(store),
                      tls=TlsContexts(config.cert_path, config.key_path),
                      resolver=LiveResolver(config.nameservers))
    finally:
        await store.close()
