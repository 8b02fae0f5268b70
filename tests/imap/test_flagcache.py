"""Flag columns shared between sessions (imap/flagcache.py, issue 22), over real
sockets: a second session at the same HIGHESTMODSEQ reads no columns, a change by anyone
makes the next session read afresh, and every answer is the store's."""

from __future__ import annotations

import ssl
from collections import Counter

import pytest

from postroom.imap import flagcache
from tests.imap.conftest import ImapThread, login_raw, simple_message
from tests.imap.test_performance_paths import count_calls


def fetch_flags(client: object, tag: bytes) -> list[bytes]:
    lines = client.command(tag, b"UID FETCH 1:* (FLAGS)")  # type: ignore[attr-defined]
    assert lines[-1].startswith(tag + b" OK")
    return [line for line in lines[:-1] if b" FETCH (" in line]


def test_sessions_share_columns_until_the_mailbox_changes(
        imap_server: ImapThread, client_tls: ssl.SSLContext,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(flagcache, "MIN_MESSAGES", 1)
    for index in range(5):
        imap_server.deliver(simple_message(f"m{index}"),
                            flags=frozenset({"\\Seen"}) if index % 2 else frozenset())
    calls: Counter[str] = Counter()
    count_calls(monkeypatch, imap_server.rt.store, "list_flag_columns", calls)
    first = login_raw(imap_server, client_tls)
    first.command(b"s", b"SELECT INBOX")  # claims \Recent: the others see none
    assert len(fetch_flags(first, b"a")) == 5 and calls["list_flag_columns"] == 1

    second = login_raw(imap_server, client_tls)
    second.command(b"s", b"SELECT INBOX")
    lines = fetch_flags(second, b"b")
    assert calls["list_flag_columns"] == 1  # the first session's columns
    rows = imap_server.messages()
    assert lines == [f"* {seq} FETCH (UID {row.uid} FLAGS ({' '.join(sorted(row.flags))}))"
                     .encode() for seq, row in enumerate(rows, 1)]  # fmt: skip

    first.command(b"c", f"UID STORE {rows[0].uid} +FLAGS.SILENT (\\Flagged)".encode())
    third = login_raw(imap_server, client_tls)
    third.command(b"s", b"SELECT INBOX")
    lines = fetch_flags(third, b"d")
    assert calls["list_flag_columns"] == 2  # HIGHESTMODSEQ moved: read afresh
    assert lines[0] == f"* 1 FETCH (UID {rows[0].uid} FLAGS (\\Flagged))".encode()
    # The second session, still at the old state, hears of the change as an update.
    assert any(b"\\Flagged" in line for line in second.command(b"n", b"NOOP"))
    for client in (first, second, third):
        client.close()


def test_small_mailboxes_are_not_kept(imap_server: ImapThread, client_tls: ssl.SSLContext,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    imap_server.deliver(simple_message("only"))
    calls: Counter[str] = Counter()
    count_calls(monkeypatch, imap_server.rt.store, "list_flag_columns", calls)
    for tag in (b"a", b"b"):
        client = login_raw(imap_server, client_tls)
        client.command(b"s", b"SELECT INBOX")
        assert len(fetch_flags(client, tag)) == 1
        client.close()
    assert calls["list_flag_columns"] == 2
