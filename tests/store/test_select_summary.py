"""Contract tests for `Store.select_summary`, what IMAP SELECT reads (issue 8): the UIDs in
order, each distinct flag set once, and the first UID without \\Seen — checked against
`list_messages` on every backend."""

from __future__ import annotations

import datetime as dt

from postroom.store.api import FlagMode, NewMessage, SelectSummary, Store

WHEN = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
SEEN = frozenset({"\\Seen"})


async def _inbox(store: Store) -> int:
    account = await store.create_account("summary@example.com", "hash")
    mailbox = await store.get_mailbox(account.id, "INBOX")
    assert mailbox is not None
    return mailbox.id


async def _fill(store: Store, inbox: int, flag_sets: list[frozenset[str]]) -> None:
    for index, flags in enumerate(flag_sets):
        await store.append_message(inbox, NewMessage(f"blob{index:04d}", 10, WHEN, flags))


async def _expected(store: Store, inbox: int) -> tuple[list[int], set[frozenset[str]], int | None]:
    rows = await store.list_messages(inbox)
    unseen = [row.uid for row in rows if "\\Seen" not in row.flags]
    return [row.uid for row in rows], {row.flags for row in rows}, min(unseen, default=None)


def _actual(summary: SelectSummary) -> tuple[list[int], set[frozenset[str]], int | None]:
    assert len(summary.flag_sets) == len(set(summary.flag_sets))  # each set once
    return summary.uids, set(summary.flag_sets), summary.first_unseen


async def test_summary_matches_the_messages(store: Store) -> None:
    inbox = await _inbox(store)
    await _fill(store, inbox, [SEEN, SEEN | {"$Label1"}, frozenset(), SEEN, frozenset()])
    await store.store_flags(inbox, [1], frozenset({"\\Flagged"}), FlagMode.ADD)
    await store.expunge(inbox, [2])
    summary = await store.select_summary(inbox)
    assert _actual(summary) == await _expected(store, inbox)
    assert summary.uids == [1, 3, 4, 5] and summary.first_unseen == 3


async def test_nothing_unseen_and_empty_mailbox(store: Store) -> None:
    inbox = await _inbox(store)
    assert _actual(await store.select_summary(inbox)) == ([], set(), None)
    await _fill(store, inbox, [SEEN, SEEN | {"\\Answered"}, SEEN])
    summary = await store.select_summary(inbox)
    assert summary.first_unseen is None
    assert _actual(summary) == await _expected(store, inbox)


async def test_only_the_seen_flag_itself_counts_as_seen(store: Store) -> None:
    # A keyword "Seen", a flag-extension "\Seenx" and "\Seen" inside another flag's name
    # are not \Seen; the first unseen message is the first without exactly that flag.
    inbox = await _inbox(store)
    await _fill(store, inbox, [SEEN | {"$Zeta"}, frozenset({"Seen"}), frozenset({"\\Seenx"}),
                               frozenset({"\\Answered", "\\Seen", "$x"})])  # fmt: skip
    await store.store_flags(inbox, [2], SEEN, FlagMode.ADD)
    summary = await store.select_summary(inbox)
    assert summary.first_unseen == 3
    assert _actual(summary) == await _expected(store, inbox)
