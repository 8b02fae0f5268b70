"""The large-mailbox rules, checked by counting: SELECT is one select_summary query, the
first command needing flags one list_flag_columns query, UID FETCH 1:* (FLAGS) and flag
SEARCHes touch neither blobs nor metadata, ENVELOPE and
BODYSTRUCTURE read stored metadata and never the blob. (Timings: bench/imap_large_mailbox.py)"""

from __future__ import annotations

import ssl
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from tests.imap.conftest import ImapThread, login_raw, simple_message


def count_calls(monkeypatch: pytest.MonkeyPatch, target: object, name: str,
                counter: Counter[str]) -> None:
    original: Callable[..., Any] = getattr(target, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        counter[name] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, counted)


def test_large_mailbox_paths(imap_server: ImapThread, client_tls: ssl.SSLContext,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    for index in range(60):
        imap_server.deliver(simple_message(f"m{index}"))
    calls: Counter[str] = Counter()
    store, blobs = imap_server.rt.store, imap_server.rt.blobs
    for name in ("list_messages", "list_flag_columns", "select_summary", "get_meta",
                 "get_message"):
        count_calls(monkeypatch, store, name, calls)
    for name in ("read", "opener"):
        count_calls(monkeypatch, blobs, name, calls)
    client = login_raw(imap_server, client_tls)

    client.command(b"s", b"SELECT INBOX")
    assert calls == Counter({"select_summary": 1})
    calls.clear()
    lines = client.command(b"f", b"UID FETCH 1:* (FLAGS INTERNALDATE RFC822.SIZE)")
    assert len(lines) == 61 and calls == Counter({"list_flag_columns": 1})
    calls.clear()
    client.command(b"q", b"UID SEARCH UNSEEN LARGER 10 NOT DELETED UID 5:*")
    assert not calls
    client.command(b"e", b"FETCH 1:10 (ENVELOPE BODYSTRUCTURE)")
    assert calls == Counter({"get_meta": 10})
    calls.clear()
    client.command(b"h", b"FETCH 1:3 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    # Header bytes only, from one opener for the three blobs: never a whole read.
    assert calls["opener"] == 1 and calls["read"] == 0
    client.close()
