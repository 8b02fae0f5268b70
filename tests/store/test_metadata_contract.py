"""Contract: the `MetadataStore` role (RFC 5464 annotations, migration 0012) on every
backend."""

from __future__ import annotations

import pytest

from postroom.store.api import Store
from postroom.store.errors import NotFound
from postroom.store.metadata_api import MetadataEntry


async def _account(store: Store, address: str = "alice@example.org") -> tuple[int, int]:
    account = await store.create_account(address, "hash")
    inbox = await store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    return account.id, inbox.id


async def test_set_list_replace_remove(store: Store) -> None:
    account, inbox = await _account(store)
    await store.set_metadata(account, inbox, [("/private/comment", b"mine"),
                                              ("/shared/bin", b"\x00\xff")])
    await store.set_metadata(account, None, [("/private/comment", b"server")])
    assert await store.list_metadata(account, inbox) == [
        MetadataEntry("/private/comment", b"mine"), MetadataEntry("/shared/bin", b"\x00\xff")]
    assert await store.list_metadata(account, None) == [
        MetadataEntry("/private/comment", b"server")]
    await store.set_metadata(account, inbox, [("/private/comment", b"new"),
                                              ("/shared/bin", None), ("/shared/none", None)])
    assert await store.list_metadata(account, inbox) == [
        MetadataEntry("/private/comment", b"new")]
    assert await store.metadata_bytes(account) == len(b"new") + len(b"server")
    other, other_inbox = await _account(store, "bob@example.org")
    assert await store.list_metadata(other, None) == []
    assert await store.list_metadata(other, other_inbox) == []
    assert await store.metadata_bytes(other) == 0


async def test_entries_go_with_their_mailbox_and_account(store: Store) -> None:
    account, _inbox = await _account(store)
    box = await store.create_mailbox(account, "Projects")
    await store.set_metadata(account, box.id, [("/private/a", b"1")])
    await store.rename_mailbox(box.id, "Renamed")
    assert await store.list_metadata(account, box.id) == [MetadataEntry("/private/a", b"1")]
    await store.delete_mailbox(box.id)
    with pytest.raises(NotFound):
        await store.set_metadata(account, box.id, [("/private/a", b"1")])
    again = await store.create_mailbox(account, "Renamed")  # SQLite may reuse the id
    assert await store.list_metadata(account, again.id) == []
    await store.set_metadata(account, None, [("/private/a", b"1")])
    await store.delete_account("alice@example.org")
    assert await store.metadata_bytes(account) == 0


async def test_rename_inbox_copies_entries(store: Store) -> None:
    account, inbox = await _account(store)
    await store.set_metadata(account, inbox, [("/shared/comment", b"in")])
    await store.rename_mailbox(inbox, "Old")
    old = await store.get_mailbox(account, "Old")
    assert old is not None
    for mailbox_id in (inbox, old.id):
        assert await store.list_metadata(account, mailbox_id) == [
            MetadataEntry("/shared/comment", b"in")]
