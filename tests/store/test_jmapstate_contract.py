"""Contract: the `JmapStateStore` role (JMAP states and /changes, migration 0026, decision
0057) on every backend, driven through the same writes IMAP and delivery make."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import cast

import pytest

from postroom.store import api
from postroom.store.api import FlagMode, Mailbox, NewMessage, Store
from postroom.store.blobs import BlobStore
from postroom.store.errors import CannotCalculateChanges, NotFound, TooManyChanges
from postroom.store.jmap_api import EmailChanges, MailboxChanges
from postroom.store.sql import jmapstate
from postroom.store.sql.base import SqlBackend
from postroom.store.sql.jmapstate import parse_state, state_text

WHEN = dt.datetime(2026, 3, 1, 12, 30, tzinfo=dt.UTC)


async def _account(store: Store, address: str = "alice@example.org") -> int:
    return (await store.create_account(address, "hash")).id


async def _box(store: Store, account: int, name: str = "INBOX") -> Mailbox:
    box = await store.get_mailbox(account, name)
    assert box is not None
    return box


async def _deliver(store: Store, blobs: BlobStore, box: Mailbox,
                   flags: frozenset[str] = frozenset()) -> tuple[int, str]:  # fmt: skip
    body = b"Subject: hi\r\n\r\nhello\r\n"
    blob_id = blobs.new_id(len(body))
    row = await store.append_message(box.id, NewMessage(blob_id, len(body), WHEN, flags, "{}"),
                                     body=body)  # fmt: skip
    return row.uid, blob_id


def _emails(changes: EmailChanges) -> tuple[list[str], list[str], list[str]]:
    return changes.created, changes.updated, changes.destroyed


def _boxes(changes: MailboxChanges) -> tuple[list[str], list[str], list[str], bool]:
    return (changes.created, changes.updated, changes.destroyed,
            changes.updated_counts_only)  # fmt: skip


# -- state strings -------------------------------------------------------------------------


def test_state_strings_round_trip_and_refuse_what_is_not_ours() -> None:
    for state_id in (0, 1, 35, 36, 1295, 10**12, 2**63 - 1):
        assert parse_state(state_text(state_id)) == state_id
    assert state_text(36) == "s10"
    for text in ("", "s", "x1", "S1", "s01", "s-1", "s1 ", "sA", "s" + "z" * 13, "s1.5",
                 state_text(2**63)):
        assert parse_state(text) is None


async def test_state_is_stable_until_something_changes(store: Store, blobs: BlobStore) -> None:
    account = await _account(store)
    first = await store.jmap_state(account)
    assert first.startswith("s")
    assert await store.jmap_state(account) == first
    await _deliver(store, blobs, await _box(store, account))
    second = await store.jmap_state(account)
    assert second != first
    assert await store.jmap_state(account) == second
    with pytest.raises(NotFound):
        await store.jmap_state(987654)


async def test_concurrent_readers_share_one_new_state(store: Store, blobs: BlobStore) -> None:
    account = await _account(store)
    await _deliver(store, blobs, await _box(store, account))
    states = await asyncio.gather(*(store.jmap_state(account) for _ in range(8)))
    assert len(set(states)) == 1


async def test_a_vector_seen_before_gives_its_state_again(store: Store) -> None:
    account = await _account(store)
    before = await store.jmap_state(account)
    await store.set_subscribed(account, "Junk", False)
    unsubscribed = await store.jmap_state(account)
    await store.set_subscribed(account, "Junk", True)
    assert await store.jmap_state(account) == before
    changes = await store.jmap_mailbox_changes(account, unsubscribed)
    junk = await _box(store, account, "Junk")
    assert _boxes(changes) == ([], [junk.object_id], [], False)
    assert changes.new_state == before


# -- Email/changes ---------------------------------------------------------------------------


async def test_delivery_flags_and_expunge(store: Store, blobs: BlobStore) -> None:
    account = await _account(store)
    inbox = await _box(store, account)
    start = await store.jmap_state(account)
    uid, blob = await _deliver(store, blobs, inbox)
    delivered = await store.jmap_email_changes(account, start)
    assert _emails(delivered) == ([blob], [], [])
    assert delivered.old_state == start and delivered.new_state != start
    assert _emails(await store.jmap_email_changes(account, delivered.new_state)) == ([], [], [])

    await store.store_flags(inbox.id, [uid], frozenset({"\\Seen"}), FlagMode.ADD)
    flagged = await store.jmap_email_changes(account, delivered.new_state)
    assert _emails(flagged) == ([], [blob], [])
    assert _emails(await store.jmap_email_changes(account, start)) == ([blob], [], [])

    await store.expunge(inbox.id, [uid])
    assert _emails(await store.jmap_email_changes(account, flagged.new_state)) == (
        [], [], [blob])
    # Created and destroyed since `start`: not listed at all.
    assert _emails(await store.jmap_email_changes(account, start)) == ([], [], [])


async def test_copy_and_move_keep_the_email_id(store: Store, blobs: BlobStore) -> None:
    account = await _account(store)
    inbox, trash = await _box(store, account), await _box(store, account, "Trash")
    uid, blob = await _deliver(store, blobs, inbox)
    start = await store.jmap_state(account)
    copy = await store.copy_messages(inbox.id, [uid], trash.id)
    copied = await store.jmap_email_changes(account, start)
    assert _emails(copied) == ([], [blob], [])
    copies = await store.jmap_emails(account, [blob, "nosuchblob"])
    assert list(copies) == [blob]
    assert [(c.mailbox_object_id, c.mailbox_id, c.blob_id) for c in copies[blob]] == [
        (inbox.object_id, inbox.id, blob), (trash.object_id, trash.id, blob)]

    archive = await store.create_mailbox(account, "Archive")
    await store.move_messages(trash.id, copy.target_uids, archive.id)
    moved = await store.jmap_email_changes(account, copied.new_state)
    assert _emails(moved) == ([], [blob], [])
    assert {c.mailbox_object_id for c in (await store.jmap_emails(account, [blob]))[blob]} == {
        inbox.object_id, archive.object_id}
    assert _emails(await store.jmap_email_changes(account, start)) == ([], [blob], [])


async def test_copy_then_expunge_the_original_is_an_update(store: Store, blobs: BlobStore
                                                           ) -> None:  # fmt: skip
    account = await _account(store)
    inbox, trash = await _box(store, account), await _box(store, account, "Trash")
    uid, blob = await _deliver(store, blobs, inbox)
    start = await store.jmap_state(account)
    await store.copy_messages(inbox.id, [uid], trash.id)
    await store.expunge(inbox.id, [uid])
    assert _emails(await store.jmap_email_changes(account, start)) == ([], [blob], [])


async def test_one_copy_of_two_expunged_is_an_update(store: Store, blobs: BlobStore) -> None:
    account = await _account(store)
    inbox, trash = await _box(store, account), await _box(store, account, "Trash")
    uid, blob = await _deliver(store, blobs, inbox)
    copy = await store.copy_messages(inbox.id, [uid], trash.id)
    start = await store.jmap_state(account)
    await store.expunge(trash.id, copy.target_uids)
    assert _emails(await store.jmap_email_changes(account, start)) == ([], [blob], [])
    await store.expunge(inbox.id, [uid])
    assert _emails(await store.jmap_email_changes(account, start)) == ([], [], [blob])


async def test_created_and_destroyed_in_between_is_omitted(store: Store, blobs: BlobStore
                                                           ) -> None:  # fmt: skip
    account = await _account(store)
    inbox = await _box(store, account)
    await _deliver(store, blobs, inbox)
    start = await store.jmap_state(account)
    uid, _ = await _deliver(store, blobs, inbox)
    await store.expunge(inbox.id, [uid])
    fresh = await store.create_mailbox(account, "Fresh")  # new since `start`, emptied again
    new_uid, _ = await _deliver(store, blobs, fresh)
    await store.expunge(fresh.id, [new_uid])
    assert _emails(await store.jmap_email_changes(account, start)) == ([], [], [])
    await store.delete_mailbox(fresh.id)  # held nothing at `start`: still answerable
    assert _emails(await store.jmap_email_changes(account, start)) == ([], [], [])


async def test_new_mailbox_rows_and_rename_inbox(store: Store, blobs: BlobStore) -> None:
    account = await _account(store)
    inbox = await _box(store, account)
    _, old = await _deliver(store, blobs, inbox)
    start = await store.jmap_state(account)
    await store.rename_mailbox(inbox.id, "Old")  # RFC 9051 §6.3.9: messages move
    _, new = await _deliver(store, blobs, await _box(store, account, "Old"))
    assert _emails(await store.jmap_email_changes(account, start)) == ([new], [old], [])


async def test_deleted_mailbox_that_held_messages(store: Store, blobs: BlobStore) -> None:
    account = await _account(store)
    box = await store.create_mailbox(account, "Projects")
    await _deliver(store, blobs, box)
    start = await store.jmap_state(account)
    await store.delete_mailbox(box.id)
    with pytest.raises(CannotCalculateChanges):
        await store.jmap_email_changes(account, start)
    changes = await store.jmap_mailbox_changes(account, start)  # Mailboxes can still tell
    assert _boxes(changes) == ([], [], [box.object_id], False)


async def test_unknown_and_foreign_states(store: Store) -> None:
    account, other = await _account(store), await _account(store, "bob@example.org")
    foreign = await store.jmap_state(other)
    for state in ("nonsense", "s", "szzzzzzzz", "s" + "z" * 13, foreign):
        with pytest.raises(CannotCalculateChanges):
            await store.jmap_email_changes(account, state)
        with pytest.raises(CannotCalculateChanges):
            await store.jmap_mailbox_changes(account, state)


async def test_old_snapshots_are_pruned(store: Store, blobs: BlobStore,
                                        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setattr(jmapstate, "STATES_KEPT", 3)
    account = await _account(store)
    inbox = await _box(store, account)
    uid, blob = await _deliver(store, blobs, inbox)
    states = [await store.jmap_state(account)]
    for keyword in ("$a", "$b", "$c", "$d"):
        await store.store_flags(inbox.id, [uid], frozenset({keyword}), FlagMode.ADD)
        states.append(await store.jmap_state(account))
    for state in states[:2]:
        with pytest.raises(CannotCalculateChanges):
            await store.jmap_email_changes(account, state)
    assert _emails(await store.jmap_email_changes(account, states[2])) == ([], [blob], [])
    assert _emails(await store.jmap_email_changes(account, states[4])) == ([], [], [])


async def test_too_many_changes(store: Store, blobs: BlobStore,
                                monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    account = await _account(store)
    inbox = await _box(store, account)
    start = await store.jmap_state(account)
    delivered = sorted([(await _deliver(store, blobs, inbox))[1] for _ in range(3)])
    with pytest.raises(TooManyChanges):
        await store.jmap_email_changes(account, start, max_changes=2)
    assert (await store.jmap_email_changes(account, start, max_changes=3)).created == delivered
    monkeypatch.setattr(jmapstate, "MAX_CHANGES", 2)
    with pytest.raises(TooManyChanges):  # the hard ceiling, whatever the client asks
        await store.jmap_email_changes(account, start, max_changes=10)
    await store.create_mailbox(account, "A")
    await store.create_mailbox(account, "B")
    with pytest.raises(TooManyChanges):
        await store.jmap_mailbox_changes(account, start)  # two created, INBOX updated


async def test_pruned_expunge_records(store: Store, blobs: BlobStore,
                                      monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setattr(api, "EXPUNGES_KEPT", 2)
    account = await _account(store)
    inbox = await _box(store, account)
    uids = [(await _deliver(store, blobs, inbox))[0] for _ in range(5)]
    start = await store.jmap_state(account)
    for uid in uids:
        await store.expunge(inbox.id, [uid])
    with pytest.raises(CannotCalculateChanges):
        await store.jmap_email_changes(account, start)


async def test_records_without_blob_ids(store: Store, blobs: BlobStore) -> None:
    """Expunge records written before migration 0026 name no blob."""
    account = await _account(store)
    inbox = await _box(store, account)
    uid, _ = await _deliver(store, blobs, inbox)
    start = await store.jmap_state(account)
    await store.expunge(inbox.id, [uid])
    async with cast(SqlBackend, store)._tx() as tx:
        await tx.fetch("UPDATE expunged SET blob_id = NULL")
    with pytest.raises(CannotCalculateChanges):
        await store.jmap_email_changes(account, start)


async def test_a_blob_shared_by_two_accounts(store: Store, blobs: BlobStore) -> None:
    alice, bob = await _account(store), await _account(store, "bob@example.org")
    alice_inbox, bob_inbox = await _box(store, alice), await _box(store, bob)
    uid, blob = await _deliver(store, blobs, alice_inbox)
    await store.append_message(bob_inbox.id, NewMessage(blob, 22, WHEN))  # one blob, two rows
    bob_start = await store.jmap_state(bob)
    await store.expunge(alice_inbox.id, [uid])
    assert _emails(await store.jmap_email_changes(bob, bob_start)) == ([], [], [])
    assert [c.mailbox_id for c in (await store.jmap_emails(bob, [blob]))[blob]] == [
        bob_inbox.id]
    assert await store.jmap_emails(alice, [blob]) == {}


async def test_new_uid_space_for_an_empty_mailbox(store: Store) -> None:
    account = await _account(store)
    box = await store.create_mailbox(account, "Imported")
    start = await store.jmap_state(account)
    await store.set_mailbox_uids(box.id, 4242, 10)
    row = await store.import_message(box.id, NewMessage("blob-imported", 1, WHEN),
                                     source_key="k1", uid=12)  # fmt: skip
    assert row is not None
    assert _emails(await store.jmap_email_changes(account, start)) == (
        ["blob-imported"], [], [])


# -- Mailbox/changes -------------------------------------------------------------------------


async def test_mailbox_changes(store: Store, blobs: BlobStore) -> None:
    account = await _account(store)
    inbox = await _box(store, account)
    start = await store.jmap_state(account)
    assert _boxes(await store.jmap_mailbox_changes(account, start)) == ([], [], [], False)

    await _deliver(store, blobs, inbox)
    counted = await store.jmap_mailbox_changes(account, start)
    assert _boxes(counted) == ([], [inbox.object_id], [], True)

    parent = await store.create_mailbox(account, "Work")
    child = await store.create_mailbox(account, "Work/Plans")
    created = await store.jmap_mailbox_changes(account, counted.new_state)
    assert _boxes(created) == (sorted([parent.object_id, child.object_id]), [], [], False)

    await store.rename_mailbox(parent.id, "Jobs")  # the child's name changes along
    renamed = await store.jmap_mailbox_changes(account, created.new_state)
    assert _boxes(renamed) == ([], sorted([parent.object_id, child.object_id]), [], False)

    await store.set_subscribed(account, "Jobs", True)
    subscribed = await store.jmap_mailbox_changes(account, renamed.new_state)
    assert _boxes(subscribed) == ([], [parent.object_id], [], False)

    await store.delete_mailbox(parent.id)  # the child stays, its parent gone
    deleted = await store.jmap_mailbox_changes(account, subscribed.new_state)
    assert _boxes(deleted) == ([], [child.object_id], [parent.object_id], False)
    again = await store.create_mailbox(account, "Jobs")  # another parent, same name
    recreated = await store.jmap_mailbox_changes(account, deleted.new_state)
    assert _boxes(recreated) == ([again.object_id], [child.object_id], [], False)


@pytest.mark.parametrize("scan_ratio", [0, 10**9], ids=["blob-index", "mailbox-scan"])
async def test_both_ways_of_reading_the_rows_agree(store: Store, blobs: BlobStore,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   scan_ratio: int) -> None:
    # _present_rows looks the blobs up, or reads every row when they are most of the
    # account's messages (10,000 new deliveries): both must classify alike.
    monkeypatch.setattr(jmapstate, "_SCAN_RATIO", scan_ratio)
    account = await _account(store)
    inbox, trash = await _box(store, account), await _box(store, account, "Trash")
    kept_uid, kept = await _deliver(store, blobs, inbox)
    gone_uid, gone = await _deliver(store, blobs, inbox)
    start = await store.jmap_state(account)
    await store.copy_messages(inbox.id, [kept_uid], trash.id)
    await store.expunge(inbox.id, [kept_uid, gone_uid])
    _, new = await _deliver(store, blobs, trash)
    changes = await store.jmap_email_changes(account, start)
    assert _emails(changes) == ([new], [kept], [gone])
