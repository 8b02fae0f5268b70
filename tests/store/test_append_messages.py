"""Contract: `append_messages` (RFC 3502 MULTIAPPEND) stores every message or none, on
every backend."""

from __future__ import annotations

import datetime as dt

import pytest

from postroom.store.api import NewMessage, Store
from postroom.store.blobs import BlobStore

WHEN = dt.datetime(2026, 3, 1, 12, 30, tzinfo=dt.UTC)


async def _inbox(store: Store) -> int:
    account = await store.create_account("alice@example.org", "hash")
    mailbox = await store.get_mailbox(account.id, "INBOX")
    assert mailbox is not None
    return mailbox.id


async def test_append_messages_in_order_with_bodies(store: Store, blobs: BlobStore) -> None:
    inbox = await _inbox(store)
    bodies = [b"Subject: one\r\n\r\n1\r\n", b"Subject: two\r\n\r\n" + b"2" * 100_000]
    new = [NewMessage(blobs.new_id(len(body)), len(body), WHEN, frozenset({f"$k{i}"}), "{}")
           for i, body in enumerate(bodies)]  # fmt: skip
    rows = await store.append_messages(inbox, new, bodies=bodies)
    assert [row.uid for row in rows] == [1, 2]
    assert [row.flags for row in rows] == [{"$k0"}, {"$k1"}]
    assert rows[0].modseq < rows[1].modseq
    assert await store.list_messages(inbox) == rows
    for row, body in zip(rows, bodies, strict=True):
        assert await blobs.read(row.blob_id) == body
    mailbox = await store.get_mailbox_by_id(inbox)
    assert mailbox is not None and mailbox.uidnext == 3


async def test_append_messages_all_or_none(store: Store, blobs: BlobStore) -> None:
    inbox = await _inbox(store)
    good = NewMessage(await blobs.put(b"x"), 1, WHEN, frozenset(), "{}")
    bad = NewMessage(await blobs.put(b"y"), 1, WHEN, frozenset(), None)  # type: ignore[arg-type]
    with pytest.raises(Exception):  # noqa: B017 (the backend's own integrity error)
        await store.append_messages(inbox, [good, bad])
    assert await store.list_messages(inbox) == []
    mailbox = await store.get_mailbox_by_id(inbox)
    assert mailbox is not None and mailbox.uidnext == 1
    rows = await store.append_messages(inbox, [good])
    assert [row.uid for row in rows] == [1]
