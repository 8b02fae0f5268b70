"""The Store contract for importers (issue 9): `set_mailbox_uids`, `import_message`,
`imported_keys`. Every backend must pass this file unchanged, as test_contract.py."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from postroom.errors import Refused
from postroom.store.api import Change, NewMessage, Store
from postroom.store.blobs import BlobStore
from postroom.store.changes import ChangeFeed

WHEN = dt.datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _needs_import_methods(store: Store, backend: str) -> None:
    # A backend added before issue 9 reports clearly what it lacks instead of erroring.
    if not hasattr(store, "import_message"):
        pytest.skip(f"the {backend} backend has no importer methods yet")


async def inbox(store: Store, address: str = "alice@example.org") -> tuple[int, int]:
    account = await store.create_account(address, "hash")
    box = await store.get_mailbox(account.id, "INBOX")
    assert box is not None
    return account.id, box.id


async def message(blobs: BlobStore, body: bytes = b"Subject: x\r\n\r\nhi\r\n",
                  flags: frozenset[str] = frozenset()) -> NewMessage:
    return NewMessage(await blobs.put(body), len(body), WHEN, flags, '{"meta": 1}')


async def test_empty_mailbox_takes_the_imported_uid_space(store: Store) -> None:
    _, box_id = await inbox(store)
    box = await store.set_mailbox_uids(box_id, 1275660208, 25022)
    assert (box.uidvalidity, box.uidnext) == (1275660208, 25022)
    again = await store.get_mailbox_by_id(box_id)
    assert again is not None and (again.uidvalidity, again.uidnext) == (1275660208, 25022)


async def test_uidnext_only_rises_within_one_uid_space(store: Store, blobs: BlobStore
                                                       ) -> None:
    _, box_id = await inbox(store)
    await store.set_mailbox_uids(box_id, 1000, 1)
    await store.import_message(box_id, await message(blobs), source_key="a", uid=3)
    lowered = await store.set_mailbox_uids(box_id, 1000, 2)  # a UID is never handed out twice
    assert lowered.uidnext == 4
    raised = await store.set_mailbox_uids(box_id, 1000, 50)  # allowed with messages present
    assert raised.uidnext == 50


async def test_uidvalidity_of_a_mailbox_with_messages_stays(store: Store,
                                                            blobs: BlobStore) -> None:
    _, box_id = await inbox(store)
    await store.append_message(box_id, await message(blobs))
    before = await store.get_mailbox_by_id(box_id)
    with pytest.raises(Refused):
        await store.set_mailbox_uids(box_id, 42, 100)
    assert await store.get_mailbox_by_id(box_id) == before


async def test_later_mailboxes_never_get_an_imported_uidvalidity(store: Store) -> None:
    account_id, box_id = await inbox(store)
    future = int(time.time()) + 1_000_000
    await store.set_mailbox_uids(box_id, future, 1)
    created = await store.create_mailbox(account_id, "Later")
    assert created.uidvalidity > future


async def test_import_keeps_wanted_uids_and_records_the_key(store: Store,
                                                           blobs: BlobStore) -> None:
    _, box_id = await inbox(store)
    await store.set_mailbox_uids(box_id, 777, 1)
    first = await store.import_message(box_id, await message(blobs, flags=frozenset(
        {"\\Seen", "Work"})), source_key="1700000000.M1P2.host,S=20", uid=5)
    assert first is not None
    assert (first.uid, first.flags, first.internal_date) == (5, {"\\Seen", "Work"}, WHEN)
    stored = await store.get_message(box_id, 5)
    assert stored is not None and stored.flags == {"\\Seen", "Work"}
    assert stored.internal_date == WHEN
    assert await store.get_meta(box_id, 5) == '{"meta": 1}'
    box = await store.get_mailbox_by_id(box_id)
    assert box is not None and box.uidnext == 6 and box.uidvalidity == 777
    assert box.highest_modseq >= first.modseq
    # A UID below UIDNEXT cannot be had: the next free one is used instead.
    second = await store.import_message(box_id, await message(blobs), source_key="b", uid=2)
    assert second is not None and second.uid == 6 and second.modseq > first.modseq
    third = await store.import_message(box_id, await message(blobs), source_key="c")
    assert third is not None and third.uid == 7
    assert await store.imported_keys(box_id) == {"1700000000.M1P2.host,S=20", "b", "c"}


async def test_an_imported_key_is_imported_once(store: Store, blobs: BlobStore) -> None:
    account_id, box_id = await inbox(store)
    other = await store.create_mailbox(account_id, "Other")
    assert await store.import_message(box_id, await message(blobs), source_key="k") is not None
    assert await store.import_message(box_id, await message(blobs), source_key="k") is None
    assert len(await store.list_messages(box_id)) == 1
    # Keys are per mailbox: the same file name in another folder is another message.
    assert await store.import_message(other.id, await message(blobs), source_key="k")
    # Expunging does not forget the key: a re-import does not bring the message back.
    await store.expunge(box_id, [1])
    assert await store.imported_keys(box_id) == {"k"}
    assert await store.import_message(box_id, await message(blobs), source_key="k") is None
    assert await store.list_messages(box_id) == []


async def test_deleting_a_mailbox_forgets_its_keys(store: Store, blobs: BlobStore) -> None:
    account_id, _ = await inbox(store)
    box = await store.create_mailbox(account_id, "Gone")
    await store.import_message(box.id, await message(blobs), source_key="k")
    await store.delete_mailbox(box.id)
    again = await store.create_mailbox(account_id, "Gone")
    assert await store.imported_keys(again.id) == set()


async def test_import_publishes_an_append(store: Store, blobs: BlobStore,
                                          feed: ChangeFeed) -> None:
    account_id, box_id = await inbox(store)
    new = await message(blobs)
    with feed.subscribe(account_id) as subscription:
        await store.import_message(box_id, new, source_key="k", uid=3)
        assert subscription.drain() == [Change(account_id, box_id, frozenset({"append"}))]
        assert await store.import_message(box_id, new, source_key="k") is None
        assert subscription.drain() == []


async def test_unknown_mailbox(store: Store, blobs: BlobStore) -> None:
    with pytest.raises(Refused):
        await store.import_message(424242, await message(blobs), source_key="k")
    with pytest.raises(Refused):
        await store.set_mailbox_uids(424242, 1, 1)
