"""Contract tests, on every backend, for what SEARCH and the selected view read (issue 8):
`Store.get_metas` (the stored MIME meta of many messages in one query) and the MODSEQ
that STORE / APPEND / EXPUNGE change-feed events carry."""

from __future__ import annotations

import asyncio
import datetime as dt

from postroom.store.api import Change, FlagMode, NewMessage, Store
from postroom.store.blobs import BlobStore
from postroom.store.changes import ChangeFeed

WHEN = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


async def _inbox(store: Store, address: str = "metas@example.com") -> tuple[int, int]:
    account = await store.create_account(address, "hash")
    mailbox = await store.get_mailbox(account.id, "INBOX")
    assert mailbox is not None
    return account.id, mailbox.id


async def test_get_metas_returns_each_existing_message(store: Store,
                                                       blobs: BlobStore) -> None:
    _, inbox = await _inbox(store)
    _, other = await _inbox(store, "other@example.com")
    uids = []
    for index in range(5):
        meta = f'{{"v": 1, "n": {index}, "text": "\\u00e9t\\u00e9 {index}"}}'
        blob_id = await blobs.put(b"m%d" % index)
        row = await store.append_message(inbox, NewMessage(blob_id, 10, WHEN, meta=meta))
        uids.append(row.uid)
    await store.append_message(other, NewMessage("x", 10, WHEN, meta='{"other": 1}'))
    await store.append_message(inbox, NewMessage("empty", 10, WHEN))  # stored without meta
    await store.expunge(inbox, [uids[1]])
    metas = await store.get_metas(inbox, [uids[0], uids[1], uids[3], uids[4] + 1, 999])
    assert metas == {uids[0]: '{"v": 1, "n": 0, "text": "\\u00e9t\\u00e9 0"}',
                     uids[3]: '{"v": 1, "n": 3, "text": "\\u00e9t\\u00e9 3"}',
                     uids[4] + 1: ""}  # fmt: skip
    for uid, text in metas.items():
        assert text == await store.get_meta(inbox, uid)
    assert await store.get_metas(inbox, []) == {}


async def _next(subscription_queue: object) -> Change:
    queue: asyncio.Queue[Change] = subscription_queue  # type: ignore[assignment]
    return await asyncio.wait_for(queue.get(), timeout=5)


async def test_hot_write_events_carry_their_modseq(store: Store, feed: ChangeFeed,
                                                   blobs: BlobStore) -> None:
    account, inbox = await _inbox(store)
    with feed.subscribe(account) as subscription:
        rows = [await store.append_message(inbox, NewMessage(await blobs.put(b"m%d" % i), 10,
                                                             WHEN)) for i in range(2)]
        for row in rows:
            change = await _next(subscription.queue)
            assert (change.kinds, change.modseq) == ({"append"}, row.modseq)
        stored = await store.store_flags(inbox, [rows[0].uid], frozenset({"\\Seen"}),
                                         FlagMode.ADD)  # fmt: skip
        change = await _next(subscription.queue)
        assert (change.kinds, change.modseq) == ({"flags"}, stored[0].modseq)
        assert stored[0].modseq == rows[-1].modseq + 1  # one MODSEQ per write
        await store.expunge(inbox, [rows[1].uid])
        change = await _next(subscription.queue)
        box = await store.get_mailbox_by_id(inbox)
        assert box is not None
        assert (change.kinds, change.modseq) == ({"expunge"}, box.highest_modseq)
        assert box.highest_modseq == stored[0].modseq + 1
