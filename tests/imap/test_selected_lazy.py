"""Property test of the selected view's lazily loaded flag tables (imap/selected.py, issue
8): SELECT reads only `select_summary`; `load_tables` runs later, at any point (for a
SEARCH, or a FETCH), while other sessions append, flag and expunge. The client knows every
message's flags from its cache of an earlier session (as CONDSTORE clients do) and
applies every EXPUNGE / EXISTS / FETCH update it is sent: it must end up with the store's
messages and flags, whether or when the tables were loaded."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from postroom.imap.selected import ExistsUpdate, ExpungeUpdate, FlagsUpdate, open_selected
from postroom.store.api import FlagColumns, SelectSummary
from tests.imap.test_selected_view import FakeStore

FLAGS = ["\\Seen", "$Label"]


class ColumnStore(FakeStore):
    """FakeStore with the two reads the real stores serve SELECT and load_tables from."""

    def __init__(self) -> None:
        super().__init__()
        self.column_reads = 0

    async def select_summary(self, mailbox_id: int) -> SelectSummary:
        rows = [row for _, row in sorted(self.rows.items())]
        unseen = [row.uid for row in rows if "\\Seen" not in row.flags]
        return SelectSummary([row.uid for row in rows], list({row.flags for row in rows}),
                             min(unseen, default=None))

    async def list_flag_columns(self, mailbox_id: int) -> FlagColumns:
        self.column_reads += 1
        rows = [row for _, row in sorted(self.rows.items())]
        return FlagColumns([r.uid for r in rows], [r.modseq for r in rows],
                           [r.flags for r in rows])


steps = st.lists(st.tuples(st.sampled_from(["append", "flag", "expunge", "sync", "hold",
                                            "load", "fetch"]),
                           st.integers(0, 50), st.sampled_from(FLAGS)),
                 max_size=40)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(initial=st.lists(st.sets(st.sampled_from(FLAGS)), max_size=8), actions=steps)
def test_lazy_tables_keep_the_client_right(initial: list[set[str]],
                                           actions: list[tuple[str, int, str]]) -> None:
    asyncio.run(_run(initial, actions))


async def _run(initial: list[set[str]], actions: list[tuple[str, int, str]]) -> None:
    store = ColumnStore()
    for flags in initial:
        store.append()
        last = max(store.rows)
        store.rows[last] = store.rows[last].__class__(
            1, last, store.modseq, "b", 10, store.rows[last].internal_date, frozenset(flags))
    fake: Any = store
    view = await open_selected(fake, store.mailbox(), is_read_only=False)
    assert not view.has_tables and store.column_reads == 0
    client = list(view.uids)
    known = {uid: store.rows[uid].flags for uid in client}  # the client's cache
    for action, index, flag in actions:
        if action == "append":
            store.append()
        elif action == "flag":
            store.flag(index, flag)
        elif action == "expunge":
            store.expunge(index)
        elif action == "load":  # e.g. a SEARCH: the tables load, the client learns nothing
            await view.load_tables(fake)
        elif action == "fetch":  # FETCH 1:* (FLAGS): the tables load first
            await view.load_tables(fake)
            for uid in client:
                known[uid] = frozenset(view.flags_of(uid, is_rev1=False))
        else:
            await view.refresh(fake)
            before = list(client)
            for update in view.take_updates(may_expunge=action == "sync", is_rev1=True):
                _apply(update, client, known, view)
            if action == "hold":
                assert client[: len(before)] == before
            assert client == view.uids[: len(client)]
    await view.refresh(fake)
    for update in view.take_updates(may_expunge=True, is_rev1=True):
        _apply(update, client, known, view)
    assert client == sorted(store.rows)
    for uid in client:
        assert known[uid] == store.rows[uid].flags
    loads = [a for a, _, _ in actions if a in ("load", "fetch")]
    assert store.column_reads == (1 if loads else 0)


def _apply(update: object, client: list[int], known: dict[int, frozenset[str]],
           view: Any) -> None:
    if isinstance(update, ExpungeUpdate):
        known.pop(client.pop(update.seq - 1))
    elif isinstance(update, ExistsUpdate):
        for uid in view.uids[len(client) : update.count]:
            client.append(uid)
            known[uid] = view.flags[uid]  # as a FETCH right after EXISTS would say
    elif isinstance(update, FlagsUpdate):
        assert client[update.seq - 1] == update.uid
        known[update.uid] = frozenset(f for f in update.flags if f != "\\Recent")
