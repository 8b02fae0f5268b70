"""IMAP QUOTA (RFC 9208) with imaplib against a whole App (issue 17): the capabilities,
GETQUOTAROOT / GETQUOTA with STORAGE (KiB) and MESSAGE exact after APPEND, COPY, MOVE and
EXPUNGE, SETQUOTA refused, STATUS DELETED-STORAGE, APPEND and COPY answered
NO [OVERQUOTA] (RFC 5530) while MOVE still works, and the warning APPEND can trigger."""

from __future__ import annotations

import imaplib
import re
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import make_config
from tests.quota.conftest import fill, raw_message
from tests.support.server import AppThread

USER, PASSWORD = "user@example.test", "pw-quota-1"
QUOTA = 100 * 1024  # 100 KiB


@pytest.fixture
def app(tmp_path: Path, server_cert: tuple[Path, Path]) -> Iterator[AppThread]:
    with AppThread(make_config(tmp_path, server_cert)) as served:
        served.add_account(USER, PASSWORD)
        served.call(served.runtime.store.set_quota(USER, QUOTA, 10))
        yield served


@pytest.fixture
def client(app: AppThread, client_tls: ssl.SSLContext) -> Iterator[imaplib.IMAP4_SSL]:
    with imaplib.IMAP4_SSL("127.0.0.1", app.port("imaps"), ssl_context=client_tls,
                           timeout=10) as opened:  # fmt: skip
        opened.login(USER, PASSWORD)
        yield opened


def quota_of(client: imaplib.IMAP4_SSL) -> bytes:
    typ, data = client.getquota('""')
    assert typ == "OK", data
    return data[0]


def test_capabilities_and_roots(client: imaplib.IMAP4_SSL) -> None:
    _, caps = client.capability()
    assert {b"QUOTA", b"QUOTA=RES-STORAGE", b"QUOTA=RES-MESSAGE"} <= set(caps[0].split())
    typ, data = client.getquotaroot("INBOX")
    assert typ == "OK"
    assert data == [[b'"INBOX" ""'], [b'"" (STORAGE 0 100 MESSAGE 0 10)']]
    typ, data = client.getquotaroot("Trash")  # every mailbox has the account's root
    assert data[0] == [b'"Trash" ""']
    assert client.getquotaroot("Nope")[0] == "NO"
    assert client.getquota('"other"')[0] == "NO"
    typ, data = client.setquota('""', "(STORAGE 512)")
    assert typ == "NO" and data[0].startswith(b"[NOPERM]")


def test_usage_exact_through_append_copy_move_expunge(client: imaplib.IMAP4_SSL) -> None:
    for size in (3000, 5000):
        assert client.append("INBOX", None, None, raw_message(size))[0] == "OK"
    assert quota_of(client) == b'"" (STORAGE 8 100 MESSAGE 2 10)'
    client.select("INBOX")
    assert client.copy("1:2", "Trash")[0] == "OK"
    assert quota_of(client) == b'"" (STORAGE 16 100 MESSAGE 4 10)'
    assert client.uid("MOVE", "1", "Drafts")[0] == "OK"  # stays in the account
    assert quota_of(client) == b'"" (STORAGE 16 100 MESSAGE 4 10)'
    client.store("1", "+FLAGS", "(\\Deleted)")  # the 5000-byte one
    _, data = client.status("INBOX", "(DELETED DELETED-STORAGE)")
    assert data == [b"\"INBOX\" (DELETED 1 DELETED-STORAGE 5)"]
    client.expunge()
    assert quota_of(client) == b'"" (STORAGE 11 100 MESSAGE 3 10)'


def test_overquota_append_and_copy_move_still_works(app: AppThread,
                                                    client: imaplib.IMAP4_SSL) -> None:
    app.call(fill(app.runtime, USER, QUOTA - 2_000))
    typ, data = client.append("INBOX", None, None, raw_message(3_000))
    assert typ == "NO" and data[0].startswith(b"[OVERQUOTA]")
    client.select("INBOX")
    typ, data = client.copy("1", "Trash")
    assert typ == "NO" and data[0].startswith(b"[OVERQUOTA]")
    assert client.uid("MOVE", "1", "Trash")[0] == "OK"  # moving frees nothing, adds nothing
    assert client.append("INBOX", None, None, raw_message(1_000))[0] == "OK"


def test_message_quota_refuses_append(app: AppThread, client: imaplib.IMAP4_SSL) -> None:
    app.call(fill(app.runtime, USER, 100, count=10))
    typ, data = client.append("Drafts", None, None, raw_message(200))
    assert typ == "NO" and data[0].startswith(b"[OVERQUOTA]")


def test_append_crossing_80_percent_delivers_the_warning(app: AppThread,
                                                         client: imaplib.IMAP4_SSL) -> None:
    app.call(fill(app.runtime, USER, 80_000))
    assert client.append("Sent", None, None, raw_message(3_000))[0] == "OK"
    inbox = app.inbox_messages(USER)
    assert len(inbox) == 2 and b"Subject: Mailbox quota warning: 80% used" in inbox[1]
    assert re.search(rb"It holds 81(\.\d)?K of 100K \(81%\)\.", inbox[1]), inbox[1]
