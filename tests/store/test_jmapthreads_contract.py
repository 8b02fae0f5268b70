"""Contract: the `JmapThreadStore` role (JMAP thread ids, migrations 0029 and 0031) on
every backend."""

from __future__ import annotations

import datetime as dt
import hashlib

from postroom.store.api import Mailbox, NewMessage, Store
from postroom.store.blobs import BlobStore
from postroom.store.jmapthreads_api import (
    MAX_THREAD_MESSAGE_IDS,
    SUBJECT_DIGEST_LENGTH,
    ThreadAssignment,
    UnthreadedEmail,
)

WHEN = dt.datetime(2026, 3, 1, 12, 30, tzinfo=dt.UTC)


async def _account(store: Store, address: str = "alice@example.org") -> int:
    return (await store.create_account(address, "hash")).id


async def _box(store: Store, account: int, name: str = "INBOX") -> Mailbox:
    box = await store.get_mailbox(account, name)
    assert box is not None
    return box


async def _deliver(store: Store, blobs: BlobStore, box: Mailbox, minutes: int = 0,
                   meta: str = "{}") -> str:  # fmt: skip
    body = b"Subject: hi\r\n\r\nhello\r\n"
    blob_id = blobs.new_id(len(body))
    when = WHEN + dt.timedelta(minutes=minutes)
    await store.append_message(box.id, NewMessage(blob_id, len(body), when, frozenset(), meta),
                               body=body)  # fmt: skip
    return blob_id


def _assign(email: UnthreadedEmail, thread_id: str, *ids: str) -> ThreadAssignment:
    return ThreadAssignment(email.blob_id, thread_id, email.internal_date, ids)


async def test_unthreaded_in_arrival_order_then_marked(store: Store, blobs: BlobStore) -> None:
    account = await _account(store)
    inbox, sent = await _box(store, account), await _box(store, account, "Sent")
    first = await _deliver(store, blobs, inbox, minutes=5, meta='{"m":1}')
    second = await _deliver(store, blobs, sent, minutes=1)
    await store.copy_messages(inbox.id, [1], sent.id)  # a copy: still one Email
    found = await store.jmap_unthreaded(account, 10)
    assert [one.blob_id for one in found] == [first, second]
    assert found[0].meta == '{"m":1}'
    assert found[0].internal_date == WHEN + dt.timedelta(minutes=5)
    assert [one.blob_id for one in await store.jmap_unthreaded(account, 1)] == [first]
    await store.jmap_record_threads(account, [_assign(found[0], "Tx", "a@x", "b@x")])
    assert [one.blob_id for one in await store.jmap_unthreaded(account, 10)] == [second]
    await store.jmap_record_threads(account, [_assign(found[1], "Ty")])
    assert await store.jmap_unthreaded(account, 10) == []
    third = await _deliver(store, blobs, inbox, minutes=9)
    assert [one.blob_id for one in await store.jmap_unthreaded(account, 10)] == [third]
    assert await store.jmap_unthreaded(await _account(store, "bob@example.org"), 10) == []


async def test_records_are_first_wins(store: Store, blobs: BlobStore) -> None:
    account = await _account(store)
    inbox = await _box(store, account)
    blob = await _deliver(store, blobs, inbox)
    (email,) = await store.jmap_unthreaded(account, 10)
    await store.jmap_record_threads(account, [_assign(email, "T1", "one@x", "two@x")])
    await store.jmap_record_threads(account, [_assign(email, "T2", "two@x", "three@x")])
    assert await store.jmap_thread_ids(account, [blob, "nothing"]) == {blob: "T1"}
    owners = await store.jmap_threads_for_message_ids(account, ["one@x", "two@x", "three@x",
                                                                "four@x"])  # fmt: skip
    assert owners == {"one@x": "T1", "two@x": "T1", "three@x": "T2"}
    other = await _account(store, "bob@example.org")
    assert await store.jmap_threads_for_message_ids(other, ["one@x"]) == {}
    assert await store.jmap_thread_ids(other, [blob]) == {}


async def test_message_ids_are_bounded(store: Store, blobs: BlobStore) -> None:
    account = await _account(store)
    await _deliver(store, blobs, await _box(store, account))
    (email,) = await store.jmap_unthreaded(account, 10)
    many = [f"id{n}@x" for n in range(MAX_THREAD_MESSAGE_IDS + 20)]
    await store.jmap_record_threads(account, [_assign(email, "T1", *many, "x" * 400)])
    owners = await store.jmap_threads_for_message_ids(account, [*many, "x" * 400])
    assert len(owners) == MAX_THREAD_MESSAGE_IDS
    assert "x" * 400 not in owners


async def test_thread_emails_in_received_order_existing_only(store: Store,
                                                             blobs: BlobStore) -> None:  # fmt: skip
    account = await _account(store)
    inbox = await _box(store, account)
    late = await _deliver(store, blobs, inbox, minutes=30)
    early = await _deliver(store, blobs, inbox, minutes=10)
    alone = await _deliver(store, blobs, inbox, minutes=20)
    emails = {one.blob_id: one for one in await store.jmap_unthreaded(account, 10)}
    await store.jmap_record_threads(account, [
        _assign(emails[late], "T1"), _assign(emails[early], "T1"), _assign(emails[alone], "T2")])
    assert await store.jmap_thread_emails(account, ["T1", "T2", "T3"]) == {
        "T1": [early, late], "T2": [alone]}
    await store.expunge(inbox.id, [3])  # `alone`
    assert await store.jmap_thread_emails(account, ["T1", "T2"]) == {"T1": [early, late]}
    assert await store.jmap_thread_ids(account, [alone]) == {alone: "T2"}  # kept


async def test_moved_and_reimported_mailboxes_are_found_again(
        store: Store, blobs: BlobStore) -> None:
    account = await _account(store)
    inbox, archive = await _box(store, account), await store.create_mailbox(account, "Old")
    blob = await _deliver(store, blobs, inbox)
    (email,) = await store.jmap_unthreaded(account, 10)
    await store.jmap_record_threads(account, [_assign(email, "T1")])
    await store.move_messages(inbox.id, [1], archive.id)
    assert await store.jmap_unthreaded(account, 10) == []  # moved: still threaded
    assert await store.jmap_thread_emails(account, ["T1"]) == {"T1": [blob]}
    await store.jmap_record_threads(account, [])  # the mark passes the moved message
    await store.expunge(archive.id, [1])
    # An emptied mailbox given another UID space: its mark no longer counts.
    await store.set_mailbox_uids(archive.id, 777, 1)
    again = await _deliver(store, blobs, archive)
    assert [one.blob_id for one in await store.jmap_unthreaded(account, 10)] == [again]


def _digest(subject: str) -> str:
    return hashlib.sha256(subject.encode()).hexdigest()


async def test_subject_digests_are_first_wins_per_account(store: Store, blobs: BlobStore) -> None:
    account = await _account(store)
    inbox = await _box(store, account)
    await _deliver(store, blobs, inbox)
    await _deliver(store, blobs, inbox, minutes=1)
    first, second = await store.jmap_unthreaded(account, 10)
    hello, other = _digest("HELLO"), _digest("OTHER")
    assert len(hello) == SUBJECT_DIGEST_LENGTH
    assert await store.jmap_threads_for_subjects(account, [hello]) == {}
    await store.jmap_record_threads(account, [
        ThreadAssignment(first.blob_id, "T1", WHEN, ("a@x",), hello),
        ThreadAssignment(second.blob_id, "T2", WHEN, (), None)])
    assert await store.jmap_threads_for_subjects(account, [hello, other, "short"]) == {
        hello: "T1"}
    # A second record of the digest (another process racing) keeps the first thread.
    await store.jmap_record_threads(account, [
        ThreadAssignment("elsewhere", "T3", WHEN, (), hello),
        ThreadAssignment("another", "T4", WHEN, (), other),
        ThreadAssignment("odd", "T5", WHEN, (), "not-a-digest")])
    assert await store.jmap_threads_for_subjects(account, [hello, other, "not-a-digest"]) == {
        hello: "T1", other: "T4"}
    assert await store.jmap_threads_for_message_ids(account, ["a@x"]) == {"a@x": "T1"}
    bob = await _account(store, "bob@example.org")
    assert await store.jmap_threads_for_subjects(bob, [hello, other]) == {}


async def test_many_subject_digests_in_one_lookup(store: Store) -> None:
    account = await _account(store)
    digests = [_digest(f"subject {n}") for n in range(6000)]  # more than one statement's
    await store.jmap_record_threads(account, [
        ThreadAssignment(f"b{n}", f"T{n}", WHEN, (), digest) for n, digest in enumerate(digests)])
    found = await store.jmap_threads_for_subjects(account, [*digests, _digest("none")])
    assert len(found) == 6000 and found[digests[5999]] == "T5999"
