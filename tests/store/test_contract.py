"""The Store contract: every backend must pass this file unchanged (ARCHITECTURE.md 11c)."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools

import pytest

from postroom.errors import Refused
from postroom.store import api
from postroom.store.api import (
    DEFAULT_MAILBOXES,
    AccountSummary,
    Alias,
    Change,
    Expunged,
    FlagMode,
    MailboxCounts,
    NewMessage,
    QueueEntry,
    SpecialUse,
    Store,
)
from postroom.store.blobs import BlobStore
from postroom.store.changes import ChangeFeed
from postroom.store.errors import AlreadyExists, NotFound
from tests.store.conftest import StoreMaker

WHEN = dt.datetime(2026, 3, 1, 12, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))


async def new_account(store: Store, address: str = "alice@example.org") -> int:
    return (await store.create_account(address, "hash")).id


async def mailbox_id(store: Store, account_id: int, name: str = "INBOX") -> int:
    mailbox = await store.get_mailbox(account_id, name)
    assert mailbox is not None
    return mailbox.id


async def deliver(
    store: Store,
    blobs: BlobStore,
    box: int,
    body: bytes = b"Subject: hi\r\n\r\nhello\r\n",
    flags: frozenset[str] = frozenset(),
) -> tuple[int, str]:
    """Append a message whose body the store writes with its row (as SMTP does)."""
    blob_id = blobs.new_id(len(body))
    row = await store.append_message(
        box, NewMessage(blob_id, len(body), WHEN, flags, meta='{"m": 1}'), body=body
    )
    return row.uid, blob_id


async def blob_exists(blobs: BlobStore, blob_id: str) -> bool:
    try:
        await blobs.read(blob_id)
    except FileNotFoundError:
        return False
    return True


# -- accounts and domains ----------------------------------------------------------------


async def test_create_account_lowercases_and_makes_default_mailboxes(store: Store) -> None:
    account = await store.create_account("Alice@Example.ORG", "h1")
    assert account.address == "alice@example.org"
    assert await store.get_account("ALICE@example.org") == account
    assert await store.get_account_by_id(account.id) == account
    mailboxes = await store.list_mailboxes(account.id)
    assert {(m.name, m.special_use) for m in mailboxes} == set(DEFAULT_MAILBOXES)
    assert all(m.is_subscribed for m in mailboxes)
    assert sorted(await store.list_subscriptions(account.id)) == sorted(
        name for name, _ in DEFAULT_MAILBOXES
    )
    assert len({m.uidvalidity for m in mailboxes}) == len(mailboxes)


async def test_duplicate_account_refused(store: Store) -> None:
    await new_account(store)
    with pytest.raises(AlreadyExists) as caught:
        await store.create_account("ALICE@example.org", "other")
    assert caught.value.code == "ALREADYEXISTS"
    assert isinstance(caught.value, Refused)
    assert await store.count_accounts() == 1


async def test_missing_account(store: Store) -> None:
    assert await store.get_account("nobody@example.org") is None
    assert await store.get_account_by_id(999) is None
    with pytest.raises(NotFound) as caught:
        await store.set_password("nobody@example.org", "x")
    assert caught.value.code == "NONEXISTENT"
    with pytest.raises(NotFound):
        await store.delete_account("nobody@example.org")


async def test_set_password(store: Store) -> None:
    await new_account(store)
    await store.set_password("Alice@example.org", "new-hash")
    account = await store.get_account("alice@example.org")
    assert account is not None and account.password_hash == "new-hash"


async def test_list_accounts_counts_all_mailboxes(store: Store, blobs: BlobStore) -> None:
    bob = await new_account(store, "bob@example.org")
    await new_account(store, "alice@example.org")
    await deliver(store, blobs, await mailbox_id(store, bob), b"12345")
    await deliver(store, blobs, await mailbox_id(store, bob, "Sent"), b"123")
    assert await store.list_accounts() == [
        AccountSummary("alice@example.org", 0, 0),
        AccountSummary("bob@example.org", 2, 8),
    ]
    assert await store.count_accounts() == 2


async def test_domains(store: Store) -> None:
    await new_account(store, "a@one.example")
    await store.add_alias("@Two.Example", "a@one.example")
    assert await store.list_domains() == ["one.example", "two.example"]
    assert await store.is_local_domain("ONE.example")
    assert await store.is_local_domain("two.example")
    assert not await store.is_local_domain("three.example")
    await store.delete_account("a@one.example")
    assert not await store.is_local_domain("one.example")
    assert await store.list_domains() == ["two.example"]


async def test_delete_account_removes_everything_but_aliases(
    store: Store, blobs: BlobStore
) -> None:
    account = await new_account(store)
    inbox = await mailbox_id(store, account)
    _, blob_id = await deliver(store, blobs, inbox)
    await store.add_alias("info@example.org", "alice@example.org")
    await store.delete_account("alice@example.org")
    assert await store.get_account("alice@example.org") is None
    assert await store.list_mailboxes(account) == []
    assert await store.list_subscriptions(account) == []
    assert await store.list_messages(inbox) == []
    assert not await blob_exists(blobs, blob_id)
    assert await store.alias_targets("info@example.org") == ["alice@example.org"]
    # The address is free again, with fresh mailboxes.
    again = await store.create_account("alice@example.org", "h")
    assert len(await store.list_mailboxes(again.id)) == len(DEFAULT_MAILBOXES)


# -- aliases ---------------------------------------------------------------------------


async def test_aliases(store: Store) -> None:
    await store.add_alias("Team@example.org", "a@example.org")
    await store.add_alias("team@example.org", "B@example.org")
    await store.add_alias("@example.org", "a@example.org")
    with pytest.raises(AlreadyExists):
        await store.add_alias("team@example.org", "a@EXAMPLE.org")
    assert await store.alias_targets("TEAM@example.org") == ["a@example.org", "b@example.org"]
    assert await store.alias_targets("other@example.org") == []
    assert await store.alias_targets("@example.org") == ["a@example.org"]
    assert await store.list_aliases() == [
        Alias("@example.org", "a@example.org"),
        Alias("team@example.org", "a@example.org"),
        Alias("team@example.org", "b@example.org"),
    ]
    assert await store.delete_alias("team@example.org", "b@example.org") == 1
    assert await store.delete_alias("team@example.org", "b@example.org") == 0
    await store.add_alias("team@example.org", "c@example.org")
    assert await store.delete_alias("team@example.org") == 2
    assert await store.list_aliases() == [Alias("@example.org", "a@example.org")]


# -- mailboxes -------------------------------------------------------------------------


async def test_inbox_is_case_insensitive_other_names_are_not(store: Store) -> None:
    account = await new_account(store)
    inbox = await store.get_mailbox(account, "iNbOx")
    assert inbox is not None and inbox.name == "INBOX"
    with pytest.raises(AlreadyExists):
        await store.create_mailbox(account, "inbox")
    work = await store.create_mailbox(account, "Work")
    assert await store.get_mailbox(account, "work") is None
    other = await store.create_mailbox(account, "work")
    assert other.id != work.id
    with pytest.raises(AlreadyExists):
        await store.create_mailbox(account, "Work")


async def test_create_mailbox_fields(store: Store) -> None:
    account = await new_account(store)
    mailbox = await store.create_mailbox(account, "Archive", SpecialUse.ARCHIVE)
    assert mailbox.account_id == account
    assert mailbox.uidnext == 1
    assert mailbox.highest_modseq >= 1
    assert mailbox.special_use is SpecialUse.ARCHIVE
    assert not mailbox.is_subscribed
    assert await store.get_mailbox_by_id(mailbox.id) == mailbox
    assert await store.get_mailbox_by_id(987654) is None


async def test_uidvalidity_stable_across_reopen_and_new_after_recreate(
    store: Store, make_store: StoreMaker
) -> None:
    account = await new_account(store)
    first = await store.create_mailbox(account, "Lists")
    await store.close()
    reopened = make_store()
    await reopened.open()
    try:
        same = await reopened.get_mailbox(account, "Lists")
        assert same is not None and same.uidvalidity == first.uidvalidity
        await reopened.delete_mailbox(first.id)
        recreated = await reopened.create_mailbox(account, "Lists")
        assert recreated.uidvalidity != first.uidvalidity
        assert recreated.uidnext == 1
    finally:
        await reopened.close()


async def test_delete_mailbox_releases_blobs(store: Store, blobs: BlobStore) -> None:
    account = await new_account(store)
    box = await store.create_mailbox(account, "Old")
    _, blob_id = await deliver(store, blobs, box.id)
    await store.delete_mailbox(box.id)
    assert await store.get_mailbox(account, "Old") is None
    assert not await blob_exists(blobs, blob_id)
    with pytest.raises(NotFound):
        await store.delete_mailbox(box.id)


async def test_delete_inbox_refused(store: Store) -> None:
    account = await new_account(store)
    with pytest.raises(Refused):
        await store.delete_mailbox(await mailbox_id(store, account))
    assert await store.get_mailbox(account, "INBOX") is not None


async def test_rename_moves_children_and_subscriptions(store: Store, blobs: BlobStore) -> None:
    account = await new_account(store)
    parent = await store.create_mailbox(account, "a")
    child = await store.create_mailbox(account, "a/b")
    grandchild = await store.create_mailbox(account, "a/b/c")
    unrelated = await store.create_mailbox(account, "ab")
    await store.set_subscribed(account, "a/b", True)
    uid, _ = await deliver(store, blobs, child.id)
    await store.rename_mailbox(parent.id, "x/y")
    names = {m.id: m.name for m in await store.list_mailboxes(account)}
    assert names[parent.id] == "x/y"
    assert names[child.id] == "x/y/b"
    assert names[grandchild.id] == "x/y/b/c"
    assert names[unrelated.id] == "ab"
    renamed = await store.get_mailbox_by_id(child.id)
    assert renamed is not None and renamed.uidvalidity == child.uidvalidity
    assert renamed.is_subscribed
    assert "x/y/b" in await store.list_subscriptions(account)
    assert "a/b" not in await store.list_subscriptions(account)
    assert [m.uid for m in await store.list_messages(child.id)] == [uid]


async def test_rename_onto_existing_refused(store: Store) -> None:
    account = await new_account(store)
    first = await store.create_mailbox(account, "one")
    await store.create_mailbox(account, "one/sub")
    await store.create_mailbox(account, "two/sub")
    with pytest.raises(AlreadyExists):
        await store.rename_mailbox(first.id, "Sent")
    with pytest.raises(AlreadyExists):  # the child would land on "two/sub"
        await store.rename_mailbox(first.id, "two")
    with pytest.raises(AlreadyExists):
        await store.rename_mailbox(first.id, "inbox")
    with pytest.raises(NotFound):
        await store.rename_mailbox(424242, "three")
    assert (await store.get_mailbox(account, "one/sub")) is not None


async def test_rename_to_former_child_name(store: Store) -> None:
    account = await new_account(store)
    box = await store.create_mailbox(account, "x/a")
    inner = await store.create_mailbox(account, "x/a/a")
    await store.rename_mailbox(box.id, "x")
    names = {m.id: m.name for m in await store.list_mailboxes(account)}
    assert names[box.id] == "x"
    assert names[inner.id] == "x/a"


async def test_rename_inbox_moves_messages_and_keeps_inbox(
    store: Store, blobs: BlobStore
) -> None:
    # RFC 9051 §6.3.9
    account = await new_account(store)
    inbox = await store.get_mailbox(account, "INBOX")
    assert inbox is not None
    first, _ = await deliver(store, blobs, inbox.id)
    second, _ = await deliver(store, blobs, inbox.id, flags=frozenset({"\\Seen"}))
    await store.rename_mailbox(inbox.id, "Old Mail")
    emptied = await store.get_mailbox(account, "INBOX")
    assert emptied is not None and emptied.id == inbox.id
    assert emptied.uidvalidity == inbox.uidvalidity
    assert await store.list_messages(inbox.id) == []
    assert await store.expunged_since(inbox.id, inbox.highest_modseq) == [first, second]
    moved = await store.get_mailbox(account, "Old Mail")
    assert moved is not None and moved.uidvalidity != inbox.uidvalidity
    rows = await store.list_messages(moved.id)
    assert [(r.uid, r.flags) for r in rows] == [(first, frozenset()), (second, {"\\Seen"})]
    assert all(r.modseq <= moved.highest_modseq for r in rows)
    # New mail still lands in INBOX, with UIDs that were never used there.
    third, _ = await deliver(store, blobs, inbox.id)
    assert third > second
    fourth, _ = await deliver(store, blobs, moved.id)
    assert fourth > second


async def test_subscriptions_are_kept_by_name(store: Store) -> None:
    # RFC 9051 §6.3.7: a subscription may name a mailbox that does not exist.
    account = await new_account(store)
    await store.set_subscribed(account, "Ghost/Box", True)
    await store.set_subscribed(account, "Ghost/Box", True)
    assert "Ghost/Box" in await store.list_subscriptions(account)
    await store.set_subscribed(account, "Sent", False)
    assert "Sent" not in await store.list_subscriptions(account)
    sent = await store.get_mailbox(account, "Sent")
    assert sent is not None and not sent.is_subscribed
    box = await store.create_mailbox(account, "Ghost/Box")
    assert box.is_subscribed
    await store.delete_mailbox(box.id)
    assert "Ghost/Box" in await store.list_subscriptions(account)


async def test_mailbox_counts(store: Store, blobs: BlobStore) -> None:
    account = await new_account(store)
    inbox = await mailbox_id(store, account)
    assert await store.mailbox_counts(inbox) == MailboxCounts(0, 0, 0)
    await deliver(store, blobs, inbox, b"1234", frozenset({"\\Seen", "$Work"}))
    await deliver(store, blobs, inbox, b"12", frozenset({"\\Flagged"}))
    await deliver(store, blobs, inbox, b"1", frozenset({"\\Seenish"}))
    assert await store.mailbox_counts(inbox) == MailboxCounts(3, 2, 7)


# -- messages --------------------------------------------------------------------------


async def test_append_assigns_uid_and_modseq(store: Store, blobs: BlobStore) -> None:
    account = await new_account(store)
    before = await store.get_mailbox(account, "INBOX")
    assert before is not None
    blob_id = await blobs.put(b"body")
    row = await store.append_message(
        before.id, NewMessage(blob_id, 4, WHEN, frozenset({"\\Draft", "$Label"}), "meta-json")
    )
    after = await store.get_mailbox_by_id(before.id)
    assert after is not None
    assert row.uid == before.uidnext and after.uidnext == row.uid + 1
    assert row.modseq > before.highest_modseq and after.highest_modseq == row.modseq
    assert row.flags == {"\\Draft", "$Label"}
    assert row.internal_date == WHEN and row.internal_date.utcoffset() == dt.timedelta(hours=2)
    assert row.saved_date is not None and row.saved_date.tzinfo is not None
    assert abs(row.saved_date - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)
    assert await store.get_message(before.id, row.uid) == row
    assert await store.list_messages(before.id) == [row]
    assert await store.get_meta(before.id, row.uid) == "meta-json"
    assert await store.get_message(before.id, row.uid + 1) is None
    with pytest.raises(NotFound):
        await store.get_meta(before.id, row.uid + 1)
    with pytest.raises(NotFound):
        await store.append_message(999999, NewMessage(blob_id, 4, WHEN))


async def test_naive_internal_date_is_utc(store: Store, blobs: BlobStore) -> None:
    inbox = await mailbox_id(store, await new_account(store))
    row = await store.append_message(
        inbox, NewMessage(await blobs.put(b"x"), 1, dt.datetime(2026, 1, 2, 3, 4, 5))
    )
    stored = await store.get_message(inbox, row.uid)
    assert stored is not None
    assert stored.internal_date == dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


async def test_uids_never_reused_after_expunge_and_reopen(
    store: Store, blobs: BlobStore, make_store: StoreMaker
) -> None:
    inbox = await mailbox_id(store, await new_account(store))
    uids = [(await deliver(store, blobs, inbox))[0] for _ in range(3)]
    assert uids == sorted(uids) and len(set(uids)) == 3
    assert (await store.expunge(inbox, [uids[2]])).uids == [uids[2]]
    await store.close()
    reopened = make_store()
    await reopened.open()
    try:
        later, _ = await deliver(reopened, blobs, inbox)
        assert later > uids[2]
    finally:
        await reopened.close()


async def test_modseq_strictly_increases(store: Store, blobs: BlobStore) -> None:
    inbox = await mailbox_id(store, await new_account(store))
    seen: list[int] = []

    async def highest() -> int:
        mailbox = await store.get_mailbox_by_id(inbox)
        assert mailbox is not None
        return mailbox.highest_modseq

    seen.append(await highest())
    a, _ = await deliver(store, blobs, inbox)
    seen.append(await highest())
    b, _ = await deliver(store, blobs, inbox)
    seen.append(await highest())
    await store.store_flags(inbox, [a], frozenset({"\\Seen"}), FlagMode.ADD)
    seen.append(await highest())
    await store.expunge(inbox, [b])
    seen.append(await highest())
    assert all(x < y for x, y in itertools.pairwise(seen))


async def test_list_messages_changed_since(store: Store, blobs: BlobStore) -> None:
    inbox = await mailbox_id(store, await new_account(store))
    uids = [(await deliver(store, blobs, inbox))[0] for _ in range(4)]
    mark = (await store.list_messages(inbox))[-1].modseq
    assert await store.list_messages(inbox, changed_since=mark) == []
    await store.store_flags(inbox, [uids[2], uids[0]], frozenset({"$A"}), FlagMode.ADD)
    changed = await store.list_messages(inbox, changed_since=mark)
    assert [m.uid for m in changed] == [uids[0], uids[2]]
    assert all(m.modseq > mark for m in changed)
    assert [m.uid for m in await store.list_messages(inbox)] == uids


async def test_store_flags_modes(store: Store, blobs: BlobStore) -> None:
    inbox = await mailbox_id(store, await new_account(store))
    a, _ = await deliver(store, blobs, inbox, flags=frozenset({"\\Seen"}))
    b, _ = await deliver(store, blobs, inbox)
    added = await store.store_flags(inbox, [a, b], frozenset({"\\Seen"}), FlagMode.ADD)
    assert [(m.uid, m.flags) for m in added] == [(b, {"\\Seen"})]  # a did not change
    replaced = await store.store_flags(
        inbox, [a, b, 9999], frozenset({"\\Flagged", "$X"}), FlagMode.REPLACE
    )
    assert [(m.uid, m.flags) for m in replaced] == [
        (a, {"\\Flagged", "$X"}),
        (b, {"\\Flagged", "$X"}),
    ]
    removed = await store.store_flags(inbox, [a], frozenset({"$X", "$Y"}), FlagMode.REMOVE)
    assert [(m.uid, m.flags) for m in removed] == [(a, {"\\Flagged"})]
    current = await store.get_message(inbox, a)
    assert current == removed[0]
    assert await store.store_flags(inbox, [a], frozenset({"$Y"}), FlagMode.REMOVE) == []


async def test_store_flags_unchanged_since(store: Store, blobs: BlobStore) -> None:
    # RFC 7162 §3.1.3
    inbox = await mailbox_id(store, await new_account(store))
    a, _ = await deliver(store, blobs, inbox)
    b, _ = await deliver(store, blobs, inbox)
    row_a = await store.get_message(inbox, a)
    assert row_a is not None
    await store.store_flags(inbox, [b], frozenset({"$Touched"}), FlagMode.ADD)
    changed = await store.store_flags(
        inbox, [a, b], frozenset({"\\Deleted"}), FlagMode.ADD, unchanged_since=row_a.modseq
    )
    assert [m.uid for m in changed] == [a]
    still = await store.get_message(inbox, b)
    assert still is not None and still.flags == {"$Touched"}


async def test_expunge_and_expunged_since(store: Store, blobs: BlobStore) -> None:
    inbox = await mailbox_id(store, await new_account(store))
    uids = [(await deliver(store, blobs, inbox))[0] for _ in range(4)]
    mark = (await store.get_mailbox_by_id(inbox)).highest_modseq  # type: ignore[union-attr]
    # One MODSEQ for the whole expunge, reported: the mailbox's HIGHESTMODSEQ after it.
    assert await store.expunge(inbox, [uids[3], uids[1], 777]) == Expunged(
        [uids[1], uids[3]], mark + 1)
    middle = (await store.get_mailbox_by_id(inbox)).highest_modseq  # type: ignore[union-attr]
    assert middle == mark + 1
    assert await store.expunge(inbox, [uids[1]]) == Expunged([], 0)  # nothing: no MODSEQ
    assert (await store.get_mailbox_by_id(inbox)).highest_modseq == middle  # type: ignore[union-attr]
    assert await store.expunge(inbox, [uids[0]]) == Expunged([uids[0]], middle + 1)
    assert await store.expunged_since(inbox, mark) == [uids[0], uids[1], uids[3]]
    assert await store.expunged_since(inbox, middle) == [uids[0]]
    assert [m.uid for m in await store.list_messages(inbox)] == [uids[2]]


async def test_old_expunge_records_are_pruned_and_answered_by_what_is_gone(
        store: Store, blobs: BlobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Migration 0007: a mailbox keeps about its newest EXPUNGES_KEPT records. Asked from
    before the pruned ones, the store names every UID up to them that is gone — more than
    were expunged since, never one still present; from later on it stays exact."""
    monkeypatch.setattr(api, "EXPUNGES_KEPT", 3)
    inbox = await mailbox_id(store, await new_account(store))
    uids = [(await deliver(store, blobs, inbox))[0] for _ in range(10)]
    marks = [(await store.get_mailbox_by_id(inbox)).highest_modseq]  # type: ignore[union-attr]
    for uid in uids[:7]:  # one expunge each; the sixth prunes the first three records
        marks.append((await store.expunge(inbox, [uid])).modseq)
    assert await store.expunged_since(inbox, marks[5]) == uids[5:7]  # kept: exact
    assert await store.expunged_since(inbox, marks[3]) == uids[3:7]
    assert await store.expunged_since(inbox, marks[2]) == uids[:7]  # pruned: all gone
    assert await store.expunged_since(inbox, marks[0]) == uids[:7]
    assert await store.expunged_since(inbox, marks[7]) == []
    assert [m.uid for m in await store.list_messages(inbox)] == uids[7:]


async def test_expunge_releases_blob(store: Store, blobs: BlobStore) -> None:
    inbox = await mailbox_id(store, await new_account(store))
    uid, blob_id = await deliver(store, blobs, inbox)
    assert await blob_exists(blobs, blob_id)
    await store.expunge(inbox, [uid])
    assert not await blob_exists(blobs, blob_id)


async def test_copy_shares_blob_until_last_reference(store: Store, blobs: BlobStore) -> None:
    account = await new_account(store)
    inbox = await mailbox_id(store, account)
    target = await store.create_mailbox(account, "Copies")
    await deliver(store, blobs, target.id)  # the target's uidnext is now 2
    first, blob_a = await deliver(store, blobs, inbox, b"a", frozenset({"\\Seen", "$K"}))
    second, blob_b = await deliver(store, blobs, inbox, b"bb")
    result = await store.copy_messages(inbox, [second, first, 4242], target.id)
    assert result.uidvalidity == target.uidvalidity
    assert result.source_uids == (first, second)
    assert result.target_uids == (2, 3)
    copied = await store.get_message(target.id, 2)
    original = await store.get_message(inbox, first)
    assert copied is not None and original is not None
    assert copied.blob_id == blob_a and copied.flags == original.flags
    assert copied.internal_date == original.internal_date and copied.size == 1
    assert await store.get_meta(target.id, 2) == await store.get_meta(inbox, first)
    await store.expunge(inbox, [first, second])
    assert await blob_exists(blobs, blob_a) and await blob_exists(blobs, blob_b)
    await store.expunge(target.id, [2])
    assert not await blob_exists(blobs, blob_a)
    await store.delete_mailbox(target.id)
    assert not await blob_exists(blobs, blob_b)


async def test_copy_nothing(store: Store) -> None:
    account = await new_account(store)
    target = await store.create_mailbox(account, "T")
    result = await store.copy_messages(await mailbox_id(store, account), [1, 2], target.id)
    assert (result.uidvalidity, result.source_uids, result.target_uids) == (
        target.uidvalidity,
        (),
        (),
    )


async def test_move_is_copy_plus_expunge(store: Store, blobs: BlobStore) -> None:
    account = await new_account(store)
    inbox = await mailbox_id(store, account)
    trash = await store.get_mailbox(account, "Trash")
    assert trash is not None
    a, blob_id = await deliver(store, blobs, inbox)
    b, _ = await deliver(store, blobs, inbox)
    mark = (await store.get_mailbox_by_id(inbox)).highest_modseq  # type: ignore[union-attr]
    result = await store.move_messages(inbox, [a], trash.id)
    assert result.source_uids == (a,) and result.target_uids == (trash.uidnext,)
    assert [m.uid for m in await store.list_messages(inbox)] == [b]
    assert await store.expunged_since(inbox, mark) == [a]
    moved = await store.get_message(trash.id, trash.uidnext)
    assert moved is not None and moved.blob_id == blob_id
    assert await blob_exists(blobs, blob_id)


async def test_move_to_missing_mailbox_changes_nothing(store: Store, blobs: BlobStore) -> None:
    inbox = await mailbox_id(store, await new_account(store))
    a, blob_id = await deliver(store, blobs, inbox)
    with pytest.raises(NotFound):
        await store.move_messages(inbox, [a], 31337)
    assert [m.uid for m in await store.list_messages(inbox)] == [a]
    assert await blob_exists(blobs, blob_id)


# -- queue -----------------------------------------------------------------------------


def queue_entry(recipient: str, blob_id: str, next_attempt: dt.datetime) -> QueueEntry:
    return QueueEntry(
        id=0,
        message_id="m1",
        sender="alice@example.org",
        recipient=recipient,
        domain=recipient.rpartition("@")[2],
        blob_id=blob_id,
        size=10,
        created=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        next_attempt=next_attempt,
        attempts=0,
        last_error="",
        envid="env-1",
        notify="SUCCESS,FAILURE",
    )


async def test_queue_lifecycle(store: Store, blobs: BlobStore) -> None:
    blob_id = await blobs.put(b"outbound")
    now = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)
    later = now + dt.timedelta(hours=1)
    stored = await store.enqueue(
        [
            queue_entry("x@remote.example", blob_id, later),
            queue_entry("y@other.example", blob_id, now),
        ]
    )
    assert len({entry.id for entry in stored}) == 2
    assert await store.list_queue() == stored
    due = await store.due_queue_entries(now, 10)
    assert [entry.recipient for entry in due] == ["y@other.example"]
    assert due[0] == stored[1]
    assert due[0].notify == "SUCCESS,FAILURE" and due[0].envid == "env-1"
    # Times come back aware, whatever offset they went in with.
    assert due[0].next_attempt == now and due[0].next_attempt.tzinfo is not None
    await store.reschedule(stored[1].id, later + dt.timedelta(hours=1), "451 try later")
    assert await store.due_queue_entries(now, 10) == []
    assert [e.recipient for e in await store.due_queue_entries(later, 10)] == ["x@remote.example"]
    retried = {e.id: e for e in await store.list_queue()}[stored[1].id]
    assert (retried.attempts, retried.last_error) == (1, "451 try later")
    assert await store.flush_queue(now) == 2
    assert [e.recipient for e in await store.due_queue_entries(now, 1)] == ["x@remote.example"]
    await store.finish_queue_entry(stored[0].id)
    assert await blob_exists(blobs, blob_id)  # the other recipient still needs it
    await store.finish_queue_entry(stored[1].id)
    assert not await blob_exists(blobs, blob_id)
    assert await store.list_queue() == []


async def test_queue_timezones_compare_as_instants(store: Store, blobs: BlobStore) -> None:
    blob_id = await blobs.put(b"x")
    plus_two = dt.timezone(dt.timedelta(hours=2))
    at = dt.datetime(2026, 5, 1, 14, 0, tzinfo=plus_two)  # 12:00 UTC
    await store.enqueue([queue_entry("x@remote.example", blob_id, at)])
    assert await store.due_queue_entries(dt.datetime(2026, 5, 1, 11, 59, tzinfo=dt.UTC), 5) == []
    due = await store.due_queue_entries(dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC), 5)
    assert len(due) == 1 and due[0].next_attempt == at


async def test_delete_queue_message(store: Store, blobs: BlobStore) -> None:
    blob_id = await blobs.put(b"x")
    now = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
    await store.enqueue(
        [queue_entry("a@r.example", blob_id, now), queue_entry("b@r.example", blob_id, now)]
    )
    assert await store.delete_queue_message("other") == 0
    assert await store.delete_queue_message("m1") == 2
    assert await store.list_queue() == []
    assert not await blob_exists(blobs, blob_id)


async def test_due_queue_limit(store: Store, blobs: BlobStore) -> None:
    blob_id = await blobs.put(b"x")
    base = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
    await store.enqueue(
        [queue_entry(f"r{i}@r.example", blob_id, base - dt.timedelta(minutes=i)) for i in range(5)]
    )
    due = await store.due_queue_entries(base, 3)
    assert [e.recipient for e in due] == ["r4@r.example", "r3@r.example", "r2@r.example"]


async def test_lease_renewal_keeps_only_rows_still_held(store: Store, blobs: BlobStore) -> None:
    blob_id = await blobs.put(b"x")
    now = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)
    lease = dt.timedelta(minutes=15)
    await store.enqueue([queue_entry(f"r{i}@r.example", blob_id, now) for i in range(3)])
    (unclaimed,) = await store.enqueue([queue_entry("later@r.example", blob_id,
                                                    now + dt.timedelta(days=1))])
    taken, held, settled = await store.claim_due_queue_entries(now, 3, lease)
    await store.reschedule(settled.id, now + dt.timedelta(hours=1), "451 later")
    # `taken`'s lease ran out and another worker claimed it: its lease is not ours any more.
    expired = now + lease
    assert [e.id for e in await store.claim_due_queue_entries(expired, 1, lease)] == [taken.id]
    renewed_until = now + dt.timedelta(minutes=10) + lease
    ids = [held.id, settled.id, taken.id, unclaimed.id]
    assert await store.renew_queue_leases(ids, now + lease, renewed_until) == [held.id]
    # Renewed: not due when the first lease would have ended; due again at the new end.
    assert await store.claim_due_queue_entries(expired, 10, lease) == []
    again = await store.claim_due_queue_entries(renewed_until, 10, lease)
    assert [e.id for e in again] == [held.id]
    # Renewing from the old end again finds nothing: the row's lease has moved on.
    assert await store.renew_queue_leases([held.id], now + lease, renewed_until) == []


# -- blobs and the change feed ---------------------------------------------------------


async def test_release_blob_if_unused(store: Store, blobs: BlobStore) -> None:
    inbox = await mailbox_id(store, await new_account(store))
    _, used = await deliver(store, blobs, inbox)
    queued = await blobs.put(b"queued")
    await store.enqueue([queue_entry("a@r.example", queued, dt.datetime.now(dt.UTC))])
    orphan = await blobs.put(b"orphan")
    for blob_id in (used, queued, orphan):
        await store.release_blob_if_unused(blob_id)
    assert await blob_exists(blobs, used) and await blob_exists(blobs, queued)
    assert not await blob_exists(blobs, orphan)


async def next_change(subscription_queue: asyncio.Queue[Change]) -> Change:
    return await asyncio.wait_for(subscription_queue.get(), timeout=5)


async def test_change_feed(store: Store, blobs: BlobStore, feed: ChangeFeed) -> None:
    account = await new_account(store)
    inbox = await mailbox_id(store, account)
    with feed.subscribe(account) as subscription:
        uid, _ = await deliver(store, blobs, inbox)
        box_row = await store.get_mailbox_by_id(inbox)
        assert box_row is not None
        # The hot writes say which MODSEQ they committed at (imap/selected.py `covers`).
        assert await next_change(subscription.queue) == Change(
            account, inbox, frozenset({"append"}), box_row.highest_modseq
        )
        await store.store_flags(inbox, [uid], frozenset({"\\Seen"}), FlagMode.ADD)
        assert (await next_change(subscription.queue)).kinds == {"flags"}
        trash = await mailbox_id(store, account, "Trash")
        await store.move_messages(inbox, [uid], trash)
        moved = {c.mailbox_id: c.kinds for c in subscription.drain()}
        assert moved == {trash: {"append"}, inbox: {"expunge"}}
        box = await store.create_mailbox(account, "New")
        assert await next_change(subscription.queue) == Change(
            account, box.id, frozenset({"mailbox"})
        )
        # Nothing changed, nothing published.
        await store.store_flags(inbox, [uid], frozenset({"\\Seen"}), FlagMode.ADD)
        assert subscription.drain() == []


async def test_failed_write_publishes_nothing(store: Store, feed: ChangeFeed) -> None:
    account = await new_account(store)
    with feed.subscribe(account) as subscription:
        with pytest.raises(AlreadyExists):
            await store.create_mailbox(account, "Sent")
        assert subscription.drain() == []


async def test_append_with_a_body_writes_the_blob_with_the_row(
        store: Store, blobs: BlobStore) -> None:
    """Issue 8: SMTP hands the blob's bytes to the first append instead of writing the
    blob in a trip of its own; it is readable once the append returns."""
    box = await mailbox_id(store, await new_account(store))
    blob_id = blobs.new_id(3)
    body = b"Subject: one trip\r\n\r\nhello\r\n"
    row = await store.append_message(box, NewMessage(blob_id, len(body), WHEN, frozenset(),
                                                     meta='{"m": 1}'), body=body)
    assert row.blob_id == blob_id
    assert await blobs.read(blob_id) == body
    (listed,) = await store.list_messages(box)
    assert listed.blob_id == blob_id


async def test_append_with_a_body_into_a_missing_mailbox_fails_and_keeps_nothing(
        store: Store, blobs: BlobStore) -> None:
    blob_id = blobs.new_id(3)
    with pytest.raises(NotFound):
        await store.append_message(987654, NewMessage(blob_id, 3, WHEN, frozenset(), "{}"),
                                   body=b"abc")
    await store.release_blob_if_unused(blob_id)
    assert not await blob_exists(blobs, blob_id)
