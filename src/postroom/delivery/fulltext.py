"""The full-text indexer (issue 22, [0051](../../../docs/decisions/0051-fulltext-index.md)):
brings the index SEARCH TEXT/BODY consult up to date, in the background.

Owns `FulltextIndexer`: a task of the main process (ENABLE_FTS) that asks the store for
messages above their mailbox's indexed UID, computes the texts SEARCH would match
(`mail/searchtext.py`, in a worker thread) and records them with the new indexed UID.

Invariants:
- Delivery never waits for it: a message is searchable at once (the old way) and the
  index only makes SEARCH faster once it holds it; so an upgraded installation starts
  serving at once and its mail is indexed while it runs.
- A batch is at most BATCH_MESSAGES messages of up to BATCH_MAILBOXES mailboxes, each
  mailbox recorded in its own short transaction; between batches the loop runs others.
- While mail is arriving (a mailbox's last UID grew since the previous look, looks
  IDLE_SECONDS apart) indexing waits, so a burst of deliveries keeps its rate and the
  index catches up once it is over; under mail that never stops, one batch is indexed
  every MAX_DEFER_SECONDS. With nothing arriving (an upgrade's backlog) it runs at full
  speed.
- A message that cannot be read or whose text is too long or not storable is recorded as
  skipped (searched the old way), never retried forever; a store failure is logged and
  retried after IDLE_SECONDS.
"""

from __future__ import annotations

import asyncio
import logging

from postroom.loops import cancel_and_wait, wait_event
from postroom.mail.searchtext import index_texts
from postroom.store.api import Store
from postroom.store.blobs import BlobOpener, BlobStore
from postroom.store.errors import StorageFailure
from postroom.store.fulltext_api import FulltextBatch, FulltextDoc

log = logging.getLogger(__name__)

BATCH_MAILBOXES = 8
BATCH_MESSAGES = 64
IDLE_SECONDS = 1.0  # between looks when nothing was left to index
MAX_DEFER_SECONDS = 10.0  # longest wait for a pause in arriving mail


class FulltextIndexer:
    def __init__(self, store: Store, blobs: BlobStore, *, idle: float = IDLE_SECONDS) -> None:
        self.store = store
        self.blobs = blobs
        self.idle = idle
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._last_uids: dict[int, int] = {}  # mailbox id → its last UID at the last look
        self.busy = False  # mail arrived between the last two looks

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="fulltext-indexer")

    def kick(self) -> None:
        """Look for work now rather than after the idle pause."""
        self._wake.set()

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def run_once(self) -> int:
        """Index one batch; the number of messages looked at (0: the index is current)."""
        return await self._index(await self._look())

    async def _look(self) -> list[FulltextBatch]:
        batches = await self.store.fulltext_pending(BATCH_MAILBOXES, BATCH_MESSAGES)
        self.busy = any(self._last_uids.get(b.mailbox_id, b.last_uid) < b.last_uid
                        for b in batches)  # fmt: skip
        self._last_uids = {batch.mailbox_id: batch.last_uid for batch in batches}
        return batches

    async def _index(self, batches: list[FulltextBatch]) -> int:
        done = 0
        for batch in batches:
            docs = await self._docs(batch)
            await self.store.fulltext_record(batch.mailbox_id, batch.upto, docs)
            done += max(1, len(docs))  # a mailbox whose messages are all gone counts too
            await asyncio.sleep(0)
        return done

    async def catch_up(self) -> None:
        """Index until nothing is left (tests, `bench/`)."""
        while await self.run_once():
            pass

    async def _docs(self, batch: FulltextBatch) -> list[FulltextDoc]:
        opener = await self.blobs.opener(todo.blob_id for todo in batch.todo)
        return await asyncio.to_thread(_texts, batch, opener)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        deferred_since: float | None = None
        while True:
            done = 0
            try:
                batches = await self._look()
                if batches and self.busy:  # deliveries first (module docstring)
                    deferred_since = deferred_since or loop.time()
                    if loop.time() - deferred_since < MAX_DEFER_SECONDS:
                        await self._pause()
                        continue
                deferred_since = None
                done = await self._index(batches)
            except StorageFailure as error:
                log.warning("full-text indexing paused: %s", error)
            except Exception:  # a bug must not end indexing for the process's life
                log.exception("full-text indexing failed; retrying")
            if not done:
                await self._pause()

    async def _pause(self) -> None:
        self._wake.clear()
        await wait_event(self._wake, self.idle)


def _texts(batch: FulltextBatch, opener: BlobOpener) -> list[FulltextDoc]:
    """Runs in a worker thread: each message's texts, or a skipped row."""
    docs = []
    for todo in batch.todo:
        try:
            with opener(todo.blob_id) as handle:
                raw = handle.read()
            texts = index_texts(raw, todo.meta)
        except FileNotFoundError:
            texts = None  # expunged meanwhile (nothing is recorded then), or lost
        except Exception:  # one odd message must not stop the indexer
            log.exception("full-text indexing skipped message %s", todo.blob_id)
            texts = None  # searched the old way, which reports its own trouble
        header, body = texts if texts is not None else (None, None)
        docs.append(FulltextDoc(todo.uid, header, body))
    return docs
