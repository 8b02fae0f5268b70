"""Property test of the selected view (imap/selected.py) against an in-memory store:
whatever other sessions do, a client that applies the EXPUNGE / EXISTS / FETCH updates it
is sent ends up with exactly the store's messages and flags, and sequence numbers never
shift while EXPUNGE is held back (RFC 9051 §7.5.1)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from postroom.imap.selected import (
    ExistsUpdate,
    ExpungeUpdate,
    FlagsUpdate,
    open_selected,
)
from postroom.imap.wire.grammar import SequenceSet
from postroom.store.api import Mailbox, MessageRow

NOW = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


class FakeStore:
    """Just what SelectedMailbox reads: the mailbox row, messages, expunged UIDs."""

    def __init__(self) -> None:
        self.modseq = 1
        self.uidnext = 1
        self.rows: dict[int, MessageRow] = {}
        self.expunged: dict[int, int] = {}

    def mailbox(self) -> Mailbox:
        return Mailbox(1, 1, "INBOX", 42, self.uidnext, self.modseq, None, True)

    def append(self) -> None:
        self.modseq += 1
        uid = self.uidnext
        self.uidnext += 1
        self.rows[uid] = MessageRow(1, uid, self.modseq, "b", 10, NOW, frozenset())

    def flag(self, index: int, flag: str) -> None:
        if self.rows:
            uid = sorted(self.rows)[index % len(self.rows)]
            self.modseq += 1
            flags = self.rows[uid].flags ^ {flag}
            self.rows[uid] = dataclasses.replace(self.rows[uid], flags=flags, modseq=self.modseq)

    def expunge(self, index: int) -> None:
        if self.rows:
            uid = sorted(self.rows)[index % len(self.rows)]
            self.modseq += 1
            del self.rows[uid]
            self.expunged[uid] = self.modseq

    async def get_mailbox_by_id(self, mailbox_id: int) -> Mailbox:
        return self.mailbox()

    async def list_messages(self, mailbox_id: int, *, changed_since: int = 0) -> list[MessageRow]:
        return [row for uid, row in sorted(self.rows.items()) if row.modseq > changed_since]

    async def expunged_since(self, mailbox_id: int, modseq: int) -> list[int]:
        return sorted(uid for uid, when in self.expunged.items() if when > modseq)


actions = st.lists(st.tuples(st.sampled_from(["append", "flag", "expunge", "sync", "hold"]),
                             st.integers(0, 50), st.sampled_from(["\\Seen", "$Label"])),
                   max_size=40)


@settings(max_examples=200, deadline=None)
@given(initial=st.integers(0, 8), steps=actions)
def test_client_model_matches_store(initial: int, steps: list[tuple[str, int, str]]) -> None:
    asyncio.run(_run(initial, steps))


async def _run(initial: int, steps: list[tuple[str, int, str]]) -> None:
    store = FakeStore()
    for _ in range(initial):
        store.append()
    fake: Any = store
    view = await open_selected(fake, store.mailbox(), is_read_only=False)
    client = list(view.uids)  # the client's idea: sequence number n is client[n - 1]
    client_flags = {uid: frozenset[str]() for uid in client}
    for action, index, flag in steps:
        if action == "append":
            store.append()
        elif action == "flag":
            store.flag(index, flag)
        elif action == "expunge":
            store.expunge(index)
        else:
            await view.refresh(fake)
            before = list(client)
            for update in view.take_updates(may_expunge=action == "sync", is_rev1=True):
                _apply(update, client, client_flags, view)
            if action == "hold":  # during FETCH/STORE/SEARCH: numbers must not move
                assert client[: len(before)] == before
            assert client == view.uids[: len(client)]
    await view.refresh(fake)
    for update in view.take_updates(may_expunge=True, is_rev1=True):
        _apply(update, client, client_flags, view)
    assert client == sorted(store.rows)
    for uid in client:
        assert client_flags[uid] == store.rows[uid].flags
    assert view.resolve(SequenceSet(((1, None),)), is_uid=False) == client


def _apply(update: object, client: list[int], flags: dict[int, frozenset[str]],
           view: Any) -> None:
    if isinstance(update, ExpungeUpdate):
        uid = client.pop(update.seq - 1)
        flags.pop(uid)
    elif isinstance(update, ExistsUpdate):
        assert update.count >= len(client)
        for uid in view.uids[len(client) : update.count]:
            client.append(uid)
            flags[uid] = view.rows[uid].flags
    elif isinstance(update, FlagsUpdate):
        assert client[update.seq - 1] == update.uid
        flags[update.uid] = frozenset(f for f in update.flags if f != "\\Recent")
