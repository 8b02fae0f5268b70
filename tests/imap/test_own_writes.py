"""A session's own STORE/APPEND/EXPUNGE move the selected view's baseline without a re-read
(imap/selected.py `_follow_own_write`, issue 8), and nothing another session does is lost.

Property test: the view's own writes interleave with other sessions' writes on an
in-memory store and a simulated change feed (events carry the MODSEQ they committed at;
the view re-reads only for an event it does not cover); the client model built from the
updates it is sent must end up equal to the store. Socket tests: two real sessions.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import ssl
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from postroom.imap.selected import ExistsUpdate, ExpungeUpdate, FlagsUpdate, open_selected
from postroom.store.api import Expunged, MessageRow
from tests.imap.conftest import ImapThread, RawClient, login_raw, simple_message
from tests.imap.test_selected_view import NOW, FakeStore


class FeedStore(FakeStore):
    """FakeStore that records the change feed and counts re-reads."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[int] = []  # MODSEQ of each change, in commit order
        self.rereads = 0

    def append(self) -> None:
        super().append()
        self.events.append(self.modseq)

    def flag(self, index: int, flag: str) -> None:
        before = self.modseq
        super().flag(index, flag)
        if self.modseq != before:
            self.events.append(self.modseq)

    def expunge(self, index: int) -> None:
        before = self.modseq
        super().expunge(index)
        if self.modseq != before:
            self.events.append(self.modseq)

    def own_flag(self, uid: int, flag: str) -> list[MessageRow]:
        self.modseq += 1
        row = self.rows[uid]
        self.rows[uid] = dataclasses.replace(row, flags=row.flags ^ {flag}, modseq=self.modseq)
        self.events.append(self.modseq)
        return [self.rows[uid]]

    def own_append(self) -> MessageRow:
        self.modseq += 1
        uid = self.uidnext
        self.uidnext += 1
        self.rows[uid] = MessageRow(1, uid, self.modseq, "b", 10, NOW, frozenset({"\\Seen"}))
        self.events.append(self.modseq)
        return self.rows[uid]

    def own_expunge(self, uids: list[int]) -> Expunged:
        """What Store.expunge does: the given UIDs still there go, at one new MODSEQ."""
        found = [uid for uid in uids if uid in self.rows]
        if not found:
            return Expunged([], 0)
        self.modseq += 1
        for uid in found:
            del self.rows[uid]
            self.expunged[uid] = self.modseq
        self.events.append(self.modseq)
        return Expunged(found, self.modseq)

    async def list_messages(self, mailbox_id: int, *, changed_since: int = 0) -> list[MessageRow]:
        self.rereads += 1
        return await super().list_messages(mailbox_id, changed_since=changed_since)


actions = st.lists(st.tuples(
    st.sampled_from(["append", "flag", "expunge", "own_flag", "own_append", "own_expunge",
                     "sync", "sync"]),
    st.integers(0, 50), st.sampled_from(["\\Seen", "$Label"])), max_size=40)


@settings(max_examples=300, deadline=None)
@given(initial=st.integers(0, 6), steps=actions)
def test_own_writes_never_hide_other_changes(initial: int,
                                             steps: list[tuple[str, int, str]]) -> None:
    asyncio.run(_run(initial, steps))


async def _run(initial: int, steps: list[tuple[str, int, str]]) -> None:
    store = FeedStore()
    for _ in range(initial):
        store.append()
    fake: Any = store
    view = await open_selected(fake, store.mailbox(), is_read_only=False)
    await view.load_tables(fake)
    store.events.clear()  # all before SELECT
    client = list(view.uids)
    client_flags = {uid: frozenset[str]() for uid in client}
    is_stale = False

    async def boundary() -> None:  # what Context.note_changes + send_updates do
        nonlocal is_stale
        is_stale |= any(not view.covers(modseq) for modseq in store.events)
        store.events.clear()
        if is_stale:
            await view.refresh(fake)
            is_stale = False
        for update in view.take_updates(may_expunge=True, is_rev1=False):
            _apply(update, client, client_flags, view)

    for action, index, flag in steps:
        if action in ("append", "flag", "expunge"):
            getattr(store, action)(*((index, flag) if action == "flag" else
                                     (index,) if action == "expunge" else ()))
        elif action == "own_flag":
            await boundary()  # the session refreshes before a command when stale
            _race(store, index)
            live = [uid for uid in view.uids if uid in store.rows
                    and uid not in view.pending_expunge]  # fmt: skip
            if live:
                uid = live[index % len(live)]
                view.note_stored(store.own_flag(uid, flag))
                client_flags[uid] = view.flags[uid]  # the STORE response itself
            await boundary()
        elif action == "own_expunge":
            await boundary()
            await view.refresh(fake)  # imap/commands/expunge.py deleted_uids re-reads first
            live = [uid for uid in view.uids if uid not in view.pending_expunge]
            chosen = live[index % len(live) :: 3] if live else []
            _race(store, index)
            view.note_own_expunge(store.own_expunge(chosen))
            await boundary()
        elif action == "own_append":
            await boundary()
            _race(store, index)
            if not view.note_appended(store.own_append(), fake):
                is_stale = True
            await boundary()
        else:
            await boundary()
    await boundary()
    is_stale = True  # a final NOOP re-reads whatever the feed said
    await boundary()
    assert client == sorted(store.rows)
    for uid in client:
        assert client_flags[uid] == store.rows[uid].flags, uid


def _race(store: FeedStore, index: int) -> None:
    """Another session's write committed while our command ran (after its refresh)."""
    if index % 4 == 1:
        store.append()
    elif index % 4 == 2:
        store.flag(index // 4, "$Race")
    elif index % 4 == 3:
        store.expunge(index // 4)


def _apply(update: object, client: list[int], flags: dict[int, frozenset[str]],
           view: Any) -> None:
    if isinstance(update, ExpungeUpdate):
        assert client.pop(update.seq - 1) == update.uid
        flags.pop(update.uid)
    elif isinstance(update, ExistsUpdate):
        for uid in view.uids[len(client) : update.count]:
            client.append(uid)
            flags[uid] = view.flags[uid]
    elif isinstance(update, FlagsUpdate):
        assert client[update.seq - 1] == update.uid
        flags[update.uid] = frozenset(update.flags)


def test_own_writes_alone_need_no_reread() -> None:
    async def run() -> None:
        store = FeedStore()
        for _ in range(3):
            store.append()
        fake: Any = store
        view = await open_selected(fake, store.mailbox(), is_read_only=False)
        await view.load_tables(fake)
        assert view.note_stored(store.own_flag(2, "\\Seen"))
        assert view.note_appended(store.own_append(), fake)
        assert view.baseline == store.modseq and all(view.covers(m) for m in store.events)
        assert view.mailbox.uidnext == store.uidnext
        store.flag(0, "$Other")  # someone else: now the baseline may not follow
        assert not view.note_stored(store.own_flag(2, "\\Seen"))
        assert not view.covers(store.events[-2])
        await view.refresh(fake)
        assert view.baseline == store.modseq
        updates = view.take_updates(may_expunge=True, is_rev1=False)
        assert [(u.uid, u.flags) for u in updates if isinstance(u, FlagsUpdate)] == [
            (1, ("$Other",))]

    asyncio.run(run())


def test_own_expunge_alone_needs_no_reread() -> None:
    async def run() -> None:
        store = FeedStore()
        for _ in range(4):
            store.append()
        fake: Any = store
        view = await open_selected(fake, store.mailbox(), is_read_only=False)
        await view.load_tables(fake)
        rereads = store.rereads
        assert view.note_own_expunge(store.own_expunge([2, 4]))
        assert view.baseline == store.modseq and view.covers(store.events[-1])
        updates = view.take_updates(may_expunge=True, is_rev1=False)
        assert [(u.seq, u.uid) for u in updates if isinstance(u, ExpungeUpdate)] == [
            (4, 4), (2, 2)]
        assert view.uids == [1, 3] and store.rereads == rereads
        assert not view.note_own_expunge(store.own_expunge([2]))  # nothing found: no MODSEQ
        store.append()  # someone else's delivery: our next expunge leaves a gap
        assert not view.note_own_expunge(store.own_expunge([1]))
        assert not view.covers(store.events[-1])
        await view.refresh(fake)
        updates = view.take_updates(may_expunge=True, is_rev1=False)
        assert [(type(u).__name__, u.seq if isinstance(u, ExpungeUpdate) else u.count)
                for u in updates if not isinstance(u, FlagsUpdate)] == [  # type: ignore[union-attr]
            ("ExpungeUpdate", 1), ("ExistsUpdate", 2)]
        assert view.uids == [3, 5] and view.baseline == store.modseq

    asyncio.run(run())


# -- two real sessions ----------------------------------------------------------------------
_MESSAGE = b"Subject: x\r\n\r\nHi\r\n"
APPEND = b"APPEND INBOX {%d+}\r\n%s" % (len(_MESSAGE), _MESSAGE)


def _two(server: ImapThread, client_tls: ssl.SSLContext) -> tuple[RawClient, RawClient]:
    for index in range(3):
        server.deliver(simple_message(f"m{index}"))
    first, second = login_raw(server, client_tls), login_raw(server, client_tls)
    for client in (first, second):
        client.command(b"e", b"ENABLE CONDSTORE IMAP4rev2")
        client.command(b"s", b"SELECT INBOX")
    return first, second


def _count_rereads(server: ImapThread) -> list[int]:
    """Patch the store so each `expunged_since` (one per refresh that found changes) counts."""
    store: Any = server.rt.store
    calls = [0]
    original = store.expunged_since

    async def counted(mailbox_id: int, modseq: int) -> list[int]:
        calls[0] += 1
        return list(await original(mailbox_id, modseq))

    store.expunged_since = counted
    return calls


def test_own_store_and_append_skip_the_reread(imap_server: ImapThread,
                                              client_tls: ssl.SSLContext) -> None:
    first, second = _two(imap_server, client_tls)
    first.command(b"f", b"FETCH 1:* (FLAGS)")
    rereads = _count_rereads(imap_server)
    assert first.command(b"a", b"STORE 1 +FLAGS (\\Flagged)")[-1] == b"a OK STORE completed"
    lines = first.command(b"p", APPEND)
    assert lines[0] == b"* 4 EXISTS" and lines[-1].startswith(b"p OK [APPENDUID ")
    assert first.command(b"n", b"FETCH 4 (UID FLAGS)")[0] == b"* 4 FETCH (UID 4 FLAGS ())"
    assert rereads[0] == 0
    # Someone else's change is still read and reported, with its MODSEQ (RFC 7162 §3.1.4).
    second.command(b"b", b"STORE 2 +FLAGS (\\Seen)")  # re-reads first's writes itself
    rereads[0] = 0
    lines = first.command(b"n", b"NOOP")
    assert lines[0].startswith(b"* 2 FETCH (UID 2 FLAGS (\\Seen) MODSEQ (")
    assert rereads[0] == 1
    first.close()
    second.close()


def test_own_expunge_skips_the_reread(imap_server: ImapThread,
                                      client_tls: ssl.SSLContext) -> None:
    first, second = _two(imap_server, client_tls)
    first.command(b"d", b"STORE 1,3 +FLAGS.SILENT (\\Deleted)")
    rereads = _count_rereads(imap_server)
    lines = first.command(b"x", b"EXPUNGE")
    assert lines == [b"* 3 EXPUNGE", b"* 1 EXPUNGE", b"x OK EXPUNGE completed"]
    assert first.command(b"n", b"NOOP") == [b"n OK NOOP completed"]
    assert rereads[0] == 0
    # The other session hears of it (its own refresh), and its next write reaches us.
    assert second.command(b"n", b"NOOP")[:2] == [b"* 3 EXPUNGE", b"* 1 EXPUNGE"]
    second.command(b"b", b"STORE 1 +FLAGS (\\Seen)")
    lines = first.command(b"n", b"NOOP")
    assert lines[0].startswith(b"* 1 FETCH (UID 2 FLAGS (\\Seen) MODSEQ (")
    assert rereads[0] == 2
    first.close()
    second.close()


def test_expunge_interleaved_with_other_sessions(imap_server: ImapThread,
                                                 client_tls: ssl.SSLContext) -> None:
    first, second = _two(imap_server, client_tls)
    # Another session flags \Deleted and a message arrives: our EXPUNGE removes that
    # message too (RFC 9051 §6.4.3), numbered against what our client knows.
    first.command(b"d", b"STORE 1 +FLAGS.SILENT (\\Deleted)")
    second.command(b"b", b"STORE 2 +FLAGS.SILENT (\\Deleted)")
    imap_server.deliver(simple_message("late"))
    lines = first.command(b"x", b"EXPUNGE")
    assert lines[:3] == [b"* 2 EXPUNGE", b"* 1 EXPUNGE", b"* 2 EXISTS"]
    # UID EXPUNGE only removes the UIDs named; another \Deleted message stays.
    first.command(b"d", b"UID STORE 3:4 +FLAGS.SILENT (\\Deleted)")
    lines = first.command(b"x", b"UID EXPUNGE 4")
    assert lines == [b"* 2 EXPUNGE", b"x OK UID EXPUNGE completed"]
    # CLOSE (RFC 9051 §6.4.2) goes by the flags at the time: the other session took
    # \Deleted off, so the message stays; once it sets it again, the next CLOSE removes it.
    second.command(b"u", b"UID STORE 3 -FLAGS.SILENT (\\Deleted)")
    assert first.command(b"c", b"CLOSE") == [b"c OK CLOSE completed"]
    assert [row.uid for row in imap_server.messages()] == [3]
    first.command(b"s", b"SELECT INBOX")
    second.command(b"d", b"UID STORE 3 +FLAGS.SILENT (\\Deleted)")
    assert first.command(b"c", b"CLOSE") == [b"c OK CLOSE completed"]
    assert imap_server.messages() == []
    lines = second.command(b"n", b"NOOP")
    assert b"* 1 EXPUNGE" in lines and lines[-1] == b"n OK NOOP completed"
    first.close()
    second.close()


def test_interleaved_writes_of_two_sessions_all_arrive(imap_server: ImapThread,
                                                       client_tls: ssl.SSLContext) -> None:
    first, second = _two(imap_server, client_tls)
    # The other session writes first: its change is read (before our STORE, from its
    # feed event) and reported with our answer.
    second.command(b"b", b"STORE 3 +FLAGS (\\Answered)")
    lines = first.command(b"a", b"STORE 1 +FLAGS.SILENT (\\Flagged)")
    assert lines[0].startswith(b"* 3 FETCH (UID 3 FLAGS (\\Answered) MODSEQ (")
    # Our write first, then theirs (a delivery and an expunge): both reported.
    first.command(b"c", b"STORE 2 +FLAGS.SILENT (\\Deleted)")
    imap_server.deliver(simple_message("late"))
    second.command(b"x", b"EXPUNGE")
    lines = first.command(b"n", b"NOOP")
    assert lines[:2] == [b"* 2 EXPUNGE", b"* 3 EXISTS"]
    # Our APPEND racing a delivery: both messages reach the client, in UID order.
    imap_server.deliver(simple_message("racing"))
    lines = first.command(b"p", APPEND)
    assert lines[0] == b"* 5 EXISTS"
    lines = first.command(b"u", b"FETCH 1:* (UID)")
    assert [line.split(b" ")[4].rstrip(b")") for line in lines[:-1]] == [
        b"1", b"3", b"4", b"5", b"6"]
    # Both sessions agree with the store, flags included.
    stored = {row.uid: row.flags for row in imap_server.messages()}
    for client in (first, second):
        client.command(b"n", b"NOOP")
        flags = client.command(b"f", b"UID FETCH 1:* (FLAGS)")[:-1]
        assert len(flags) == len(stored)
        for line in flags:
            uid = int(re.search(rb"UID (\d+)", line).group(1))  # type: ignore[union-attr]
            inner = re.search(rb"FLAGS \(([^)]*)\)", line).group(1)  # type: ignore[union-attr]
            assert frozenset(inner.decode().split()) == stored[uid], line
    first.close()
    second.close()
