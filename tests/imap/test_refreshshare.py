"""Refresh reads shared by the sessions of one mailbox (imap/refreshshare.py, issue 22):
sessions in IDLE woken by one delivery read the store once between them, each still
gets its own right answer, and a failed read is not kept."""

from __future__ import annotations

import asyncio
import ssl
from collections import Counter
from typing import Any

import pytest

from postroom.imap import refreshshare
from postroom.store.api import Mailbox, Store
from postroom.store.sqlite import SqliteStore
from tests.imap.conftest import ImapThread, RawClient, login_raw, simple_message
from tests.imap.test_performance_paths import count_calls


def idling(server: ImapThread, client_tls: ssl.SSLContext, count: int) -> list[RawClient]:
    clients = []
    for _ in range(count):
        client = login_raw(server, client_tls)
        assert client.command(b"s", b"SELECT INBOX")[-1].startswith(b"s OK")
        client.send(b"i IDLE\r\n")
        assert client.line() == b"+ idling"
        clients.append(client)
    return clients


def exists(client: RawClient) -> bytes:
    """The next EXISTS line (an IMAP4rev1 client also hears RECENT)."""
    while not (line := client.line()).endswith(b" EXISTS"):
        assert line.endswith(b" RECENT"), line
    return line


def test_one_delivery_wakes_every_session_with_one_read(
        imap_server: ImapThread, client_tls: ssl.SSLContext,
        monkeypatch: pytest.MonkeyPatch) -> None:
    imap_server.deliver(simple_message("before"))
    clients = idling(imap_server, client_tls, 5)
    calls: Counter[str] = Counter()
    count_calls(monkeypatch, imap_server.rt.store, "list_messages", calls)
    count_calls(monkeypatch, imap_server.rt.store, "expunged_since", calls)
    imap_server.deliver(simple_message("wake up"))
    for client in clients:
        assert exists(client) == b"* 2 EXISTS"
    assert calls == {"list_messages": 1, "expunged_since": 1}

    # Each session stays exact on its own: one expunges, the others hear of it.
    for client in clients:
        client.send(b"DONE\r\n")
        assert client.until_tagged(b"i")[-1] == b"i OK IDLE terminated"
    first = imap_server.messages()[0]
    clients[0].command(b"d", f"UID STORE {first.uid} +FLAGS.SILENT (\\Deleted)".encode())
    assert clients[0].command(b"e", b"EXPUNGE")[:1] == [b"* 1 EXPUNGE"]
    for client in clients[1:]:
        lines = client.command(b"n", b"NOOP")
        assert b"* 1 EXPUNGE" in lines and lines[-1].startswith(b"n OK")
        assert client.command(b"f", b"FETCH 1 (UID)")[0] == (
            f"* 1 FETCH (UID {first.uid + 1})".encode())
    for client in clients:
        client.close()


def test_a_different_baseline_reads_for_itself(
        imap_server: ImapThread, client_tls: ssl.SSLContext) -> None:
    early = idling(imap_server, client_tls, 1)[0]
    imap_server.deliver(simple_message("one"))
    assert exists(early) == b"* 1 EXISTS"
    late = idling(imap_server, client_tls, 1)[0]  # selected after "one": another baseline
    imap_server.deliver(simple_message("two"))
    assert exists(early) == b"* 2 EXISTS"
    assert exists(late) == b"* 2 EXISTS"
    early.close()
    late.close()


async def alices_inbox(store: Store) -> Mailbox:
    account = await store.get_account("alice@example.test")
    assert account is not None
    box = await store.get_mailbox(account.id, "INBOX")
    assert box is not None
    return box


def test_a_failed_read_reaches_every_asker_and_is_not_kept(
        imap_server: ImapThread, monkeypatch: pytest.MonkeyPatch) -> None:
    store = imap_server.rt.store
    imap_server.deliver(simple_message("one"))
    original = store.list_messages
    failures = [RuntimeError("disk on fire")]

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0.01)  # both askers are waiting by now
        if failures:
            raise failures.pop()
        return await original(*args, **kwargs)

    monkeypatch.setattr(store, "list_messages", flaky)

    async def ask_twice() -> list[object]:
        box = await alices_inbox(store)
        asks = [refreshshare.changes_since(store, box, 0) for _ in range(2)]
        failed = await asyncio.gather(*asks, return_exceptions=True)
        again = await refreshshare.changes_since(store, box, 0)
        return [*failed, again]

    first, second, again = imap_server.call(ask_twice())
    assert isinstance(first, RuntimeError) and second is first
    assert isinstance(again, refreshshare.Changes) and len(again.changed) == 1


def test_an_asker_cancelled_meanwhile_takes_nobody_elses_answer(
        imap_server: ImapThread, monkeypatch: pytest.MonkeyPatch) -> None:
    store = imap_server.rt.store
    imap_server.deliver(simple_message("one"))
    original = store.list_messages

    async def slow(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0.05)  # both askers are waiting by now
        return await original(*args, **kwargs)

    monkeypatch.setattr(store, "list_messages", slow)

    async def ask_twice_cancel_one() -> list[object]:
        box = await alices_inbox(store)
        gone = asyncio.ensure_future(refreshshare.changes_since(store, box, 0))
        stays = asyncio.ensure_future(refreshshare.changes_since(store, box, 0))
        await asyncio.sleep(0.01)
        gone.cancel()
        return list(await asyncio.gather(gone, stays, return_exceptions=True))

    gone, stays = imap_server.call(ask_twice_cancel_one())
    assert isinstance(gone, asyncio.CancelledError)
    assert isinstance(stays, refreshshare.Changes) and len(stays.changed) == 1


def test_the_woken_sessions_read_the_mailbox_row_once_and_again_after_a_change(
        imap_server: ImapThread, client_tls: ssl.SSLContext,
        monkeypatch: pytest.MonkeyPatch) -> None:
    clients = idling(imap_server, client_tls, 5)
    calls: Counter[str] = Counter()
    count_calls(monkeypatch, imap_server.rt.store, "get_mailbox_by_id", calls)
    imap_server.deliver(simple_message("one"))
    for client in clients:
        assert exists(client) == b"* 1 EXISTS"
    # One row, read after the delivery's change. On PostgreSQL every read awaits the
    # pool, so sessions woken together all start one before the first is kept.
    on_loop = isinstance(imap_server.rt.store, SqliteStore)
    assert calls["get_mailbox_by_id"] == 1 if on_loop else calls["get_mailbox_by_id"] <= 5

    # The next change makes that row old: the sessions read it again, and see "two".
    imap_server.deliver(simple_message("two"))
    for client in clients:
        assert exists(client) == b"* 2 EXISTS"
    assert calls["get_mailbox_by_id"] == 2 if on_loop else calls["get_mailbox_by_id"] <= 10

    # A session's own write is published before it returns: its refresh never uses a
    # row read before it, and the others hear of it.
    clients[0].send(b"DONE\r\n")
    assert clients[0].until_tagged(b"i")[-1] == b"i OK IDLE terminated"
    lines = clients[0].command(b"s", b"STORE 1 +FLAGS (\\Seen)")
    assert lines[-1].startswith(b"s OK") and b"\\Seen" in lines[0]
    for client in clients[1:]:
        while (line := client.line()).endswith(b" RECENT"):
            pass  # after the last EXISTS, to an IMAP4rev1 client
        assert line.startswith(b"* 1 FETCH") and b"\\Seen" in line, line
    for client in clients:
        client.close()
