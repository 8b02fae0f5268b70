"""Contract tests for the Store methods the large-mailbox paths use (issue 8):
`list_flag_columns` (SELECT) and `get_messages` (rows for the UIDs a command touches),
and group commit: concurrent appends each get their own UID and MODSEQ, in order."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from postroom.store.api import FlagMode, NewMessage, Store
from postroom.store.errors import NotFound

WHEN = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


async def _inbox(store: Store, address: str = "perf@example.com") -> int:
    account = await store.create_account(address, "hash")
    mailbox = await store.get_mailbox(account.id, "INBOX")
    assert mailbox is not None
    return mailbox.id


async def test_flag_columns_match_list_messages(store: Store) -> None:
    inbox = await _inbox(store)
    for index in range(6):
        flags = frozenset({"\\Seen"}) if index % 2 else frozenset()
        await store.append_message(inbox, NewMessage(f"blob{index:04d}", 10 + index, WHEN, flags))
    await store.store_flags(inbox, [3], frozenset({"$Label1", "\\Flagged"}), FlagMode.ADD)
    await store.expunge(inbox, [5])
    columns = await store.list_flag_columns(inbox)
    rows = await store.list_messages(inbox)
    assert columns.uids == [row.uid for row in rows] == [1, 2, 3, 4, 6]
    assert columns.modseqs == [row.modseq for row in rows]
    assert columns.flags == [row.flags for row in rows]
    assert columns.flags[2] == {"$Label1", "\\Flagged"}


async def test_flag_columns_of_empty_mailbox(store: Store) -> None:
    columns = await store.list_flag_columns(await _inbox(store))
    assert (columns.uids, columns.modseqs, columns.flags) == ([], [], [])


async def test_get_messages_returns_existing_rows_in_uid_order(store: Store) -> None:
    inbox = await _inbox(store)
    for index in range(5):
        await store.append_message(inbox, NewMessage(f"blob{index:04d}", 100 + index, WHEN))
    rows = await store.get_messages(inbox, [5, 2, 99, 2])
    assert [row.uid for row in rows] == [2, 5]
    assert [row.size for row in rows] == [101, 104]
    assert rows[0] == await store.get_message(inbox, 2)
    assert await store.get_messages(inbox, []) == []


async def test_concurrent_appends_get_distinct_ascending_uids_and_modseqs(store: Store) -> None:
    inbox = await _inbox(store)
    other = await _inbox(store, "other@example.com")
    targets = [inbox if index % 3 else other for index in range(30)]
    appended = await asyncio.gather(*(
        store.append_message(target, NewMessage(f"blob{index:04d}", index, WHEN))
        for index, target in enumerate(targets)))
    for mailbox_id in (inbox, other):
        mine = [row for row in appended if row.mailbox_id == mailbox_id]
        assert sorted(row.uid for row in mine) == list(range(1, len(mine) + 1))
        assert len({row.modseq for row in mine}) == len(mine)
        stored = await store.list_messages(mailbox_id)
        assert {(row.uid, row.modseq, row.blob_id) for row in stored} == {
            (row.uid, row.modseq, row.blob_id) for row in mine}
        mailbox = await store.get_mailbox_by_id(mailbox_id)
        assert mailbox is not None
        assert mailbox.uidnext == len(mine) + 1
        assert mailbox.highest_modseq >= max(row.modseq for row in mine)


async def test_append_to_missing_mailbox_fails_alone(store: Store) -> None:
    inbox = await _inbox(store)
    good, bad = await asyncio.gather(
        store.append_message(inbox, NewMessage("blob0001", 1, WHEN)),
        store.append_message(inbox + 1000, NewMessage("blob0002", 1, WHEN)),
        return_exceptions=True)
    assert not isinstance(good, BaseException) and good.uid == 1
    assert isinstance(bad, NotFound)
    with pytest.raises(NotFound):
        await store.append_message(inbox + 1000, NewMessage("blob0003", 1, WHEN))
