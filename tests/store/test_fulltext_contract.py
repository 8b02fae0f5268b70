"""Contract tests, on every backend, for the full-text index role (issue 22,
store/fulltext_api.py): what is pending, recording, substring answers, and that expunge,
mailbox deletion and renaming keep the index's answers true."""

from __future__ import annotations

import datetime as dt

from postroom.store.api import NewMessage, Store
from postroom.store.fulltext_api import FulltextDoc

WHEN = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


async def _inbox(store: Store, address: str = "fts@example.com") -> int:
    account = await store.create_account(address, "hash")
    mailbox = await store.get_mailbox(account.id, "INBOX")
    assert mailbox is not None
    return mailbox.id


async def _append(store: Store, mailbox_id: int, count: int) -> list[int]:
    return [(await store.append_message(mailbox_id, NewMessage(f"blob{i}", 10, WHEN,
                                                               meta=f"m{i}"))).uid
            for i in range(count)]  # fmt: skip


async def _index(store: Store, mailbox_id: int, texts: dict[int, tuple[str, str] | None]
                 ) -> None:  # fmt: skip
    [batch] = [b for b in await store.fulltext_pending(10, 100) if b.mailbox_id == mailbox_id]
    docs = [FulltextDoc(uid, *(texts[uid] or (None, None))) for uid in texts]
    await store.fulltext_record(mailbox_id, batch.upto, docs)


async def _body(store: Store, mailbox_id: int, needle: str) -> set[int]:
    match = await store.fulltext_search(mailbox_id, needle.casefold(), with_header=False)
    assert match is not None
    return set(match.uids)


async def test_pending_lists_unindexed_messages_with_their_meta(store: Store) -> None:
    inbox = await _inbox(store)
    assert [b for b in await store.fulltext_pending(10, 100) if b.mailbox_id == inbox] == []
    uids = await _append(store, inbox, 3)
    [batch] = [b for b in await store.fulltext_pending(10, 2) if b.mailbox_id == inbox]
    assert [(t.uid, t.blob_id, t.meta) for t in batch.todo] == [(uids[0], "blob0", "m0"),
                                                                (uids[1], "blob1", "m1")]
    assert batch.upto == uids[1]  # only as far as what was given
    await store.fulltext_record(inbox, batch.upto, [])
    [batch] = [b for b in await store.fulltext_pending(10, 100) if b.mailbox_id == inbox]
    assert [t.uid for t in batch.todo] == [uids[2]]
    await store.fulltext_record(inbox, batch.upto, [])
    assert [b for b in await store.fulltext_pending(10, 100) if b.mailbox_id == inbox] == []


async def test_an_expunged_tail_is_covered_too(store: Store) -> None:
    inbox = await _inbox(store)
    uids = await _append(store, inbox, 3)
    await store.expunge(inbox, uids[1:])
    [batch] = [b for b in await store.fulltext_pending(10, 100) if b.mailbox_id == inbox]
    assert [t.uid for t in batch.todo] == [uids[0]] and batch.upto == uids[2]


async def test_search_is_exact_substring_of_the_stored_text(store: Store) -> None:
    inbox = await _inbox(store)
    other = await _inbox(store, "other@example.com")
    uids = await _append(store, inbox, 4)
    [far] = await _append(store, other, 1)
    # The store keeps what it is given: the indexer gives case-folded text (ß → ss).
    texts = {uids[0]: ("subject: grüsse", "strasse and café\nnext line"),
             uids[1]: ("subject: hello", "100% sure_thing! \"quoted\" it's"),
             uids[2]: ("subject: x", "plain words"),
             uids[3]: None}  # skipped
    await _index(store, inbox, texts)
    await _index(store, other, {far: ("subject: café", "café")})
    assert await _body(store, inbox, "café") == {uids[0]}  # not the other mailbox's
    assert await _body(store, inbox, "RASSE") == {uids[0]}  # inside a word, folded
    assert await _body(store, inbox, "e and c") == {uids[0]}  # across spaces
    assert await _body(store, inbox, "é\nnex") == {uids[0]}  # across lines
    assert await _body(store, inbox, "0% s") == {uids[1]}  # LIKE's wildcards are text
    assert await _body(store, inbox, "e_t") == {uids[1]}
    assert await _body(store, inbox, "0%%") == set()
    assert await _body(store, inbox, '"quoted"') == {uids[1]}  # FTS5's quotes are text
    assert await _body(store, inbox, "it's") == {uids[1]}
    assert await _body(store, inbox, "! \"") == {uids[1]}
    assert await _body(store, inbox, "grüß") == set()  # header only: not BODY
    match = await store.fulltext_search(inbox, "grüß".casefold(), with_header=True)
    assert match is not None and match.uids == {uids[0]}  # TEXT: header too
    assert match.indexed_uid == uids[3] and match.skipped == {uids[3]}
    assert await store.fulltext_search(inbox, "ab", with_header=True) is None  # < 3
    assert await store.fulltext_search(inbox, "a\x00b", with_header=True) is None


async def test_unindexed_mailbox_answers_nothing_covered(store: Store) -> None:
    inbox = await _inbox(store)
    await _append(store, inbox, 2)
    match = await store.fulltext_search(inbox, "anything", with_header=True)
    assert match is not None and match.indexed_uid == 0


async def test_expunge_removes_index_rows(store: Store) -> None:
    inbox = await _inbox(store)
    uids = await _append(store, inbox, 2)
    await _index(store, inbox, {uid: ("h: x", "needle here") for uid in uids})
    assert await _body(store, inbox, "needle") == set(uids)
    await store.expunge(inbox, [uids[0]])
    assert await _body(store, inbox, "needle") == {uids[1]}


async def test_records_for_gone_messages_and_mailboxes_write_nothing(store: Store) -> None:
    inbox = await _inbox(store)
    uids = await _append(store, inbox, 2)
    [batch] = [b for b in await store.fulltext_pending(10, 100) if b.mailbox_id == inbox]
    await store.expunge(inbox, [uids[0]])  # between reading and recording
    await store.fulltext_record(inbox, batch.upto, [FulltextDoc(uid, "h", "needle")
                                                    for uid in uids])  # fmt: skip
    assert await _body(store, inbox, "needle") == {uids[1]}
    await store.fulltext_record(10_000_000, 5, [FulltextDoc(1, "h", "needle")])  # no error


async def test_deleting_a_mailbox_drops_its_index(store: Store) -> None:
    account = await store.create_account("del@example.com", "hash")
    box = await store.create_mailbox(account.id, "Old")
    uids = await _append(store, box.id, 1)
    await _index(store, box.id, {uids[0]: ("h: x", "needle")})
    await store.delete_mailbox(box.id)
    again = await store.create_mailbox(account.id, "New")
    assert [b for b in await store.fulltext_pending(10, 100) if b.mailbox_id == again.id] == []
    await _append(store, again.id, 1)
    match = await store.fulltext_search(again.id, "needle", with_header=True)
    assert match is not None and match.uids == set()


async def test_renaming_inbox_moves_messages_out_of_the_index(store: Store) -> None:
    inbox = await _inbox(store, "ren@example.com")
    uids = await _append(store, inbox, 2)
    await _index(store, inbox, {uid: ("h: x", "needle") for uid in uids})
    await store.rename_mailbox(inbox, "Archive")
    match = await store.fulltext_search(inbox, "needle", with_header=True)
    assert match is not None and match.uids == set()
    boxes = {b.name: b.id for b in await store.list_mailboxes(
        (await store.get_account("ren@example.com")).id)}  # type: ignore[union-attr]
    archive = boxes["Archive"]
    moved = await store.fulltext_search(archive, "needle", with_header=True)
    assert moved is not None
    # Whatever the index says of the moved messages must hold once it claims them.
    [batch] = [b for b in await store.fulltext_pending(10, 100) if b.mailbox_id == archive]
    await store.fulltext_record(archive, batch.upto,
                                [FulltextDoc(t.uid, "h: x", "other") for t in batch.todo])
    assert await _body(store, archive, "needle") == set()
    assert await _body(store, archive, "other") == {t.uid for t in batch.todo}
