"""THREAD=ORDEREDSUBJECT and THREAD=REFERENCES (RFC 5256 §4) over real sockets, with
imaplib (its `thread`/`uid('THREAD', …)` calls) and errors a client can cause."""

from __future__ import annotations

import imaplib
import ssl
from collections.abc import Iterator

import pytest

from tests.imap.conftest import PASSWORD, USER, ImapThread

# A discussion: 1 starts it, 2 answers 1, 3 answers 2, 4 answers 1 again; 5 is an
# unrelated message; 6 answers a message that is not here (a dummy parent shared with 7).
MESSAGES = [
    b"Message-ID: <a@x>\r\nSubject: plans\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\n1",
    b"Message-ID: <b@x>\r\nIn-Reply-To: <a@x>\r\nReferences: <a@x>\r\nSubject: Re: plans"
    b"\r\nDate: Mon, 1 Jan 2024 11:00:00 +0000\r\n\r\n2",
    b"Message-ID: <c@x>\r\nReferences: <a@x> <b@x>\r\nSubject: Re: plans\r\n"
    b"Date: Mon, 1 Jan 2024 12:00:00 +0000\r\n\r\n3",
    b"Message-ID: <d@x>\r\nIn-Reply-To: <a@x>\r\nSubject: Re: plans\r\n"
    b"Date: Mon, 1 Jan 2024 13:00:00 +0000\r\n\r\n4",
    b"Message-ID: <e@x>\r\nSubject: lunch\r\nDate: Mon, 1 Jan 2024 09:00:00 +0000\r\n\r\n5",
    b"Message-ID: <f@x>\r\nReferences: <gone@x>\r\nSubject: Re: old\r\n"
    b"Date: Tue, 2 Jan 2024 09:00:00 +0000\r\n\r\n6",
    b"Message-ID: <g@x>\r\nReferences: <gone@x>\r\nSubject: Re: old\r\n"
    b"Date: Tue, 2 Jan 2024 10:00:00 +0000\r\n\r\n7",
]


@pytest.fixture
def client(imap_server: ImapThread, client_tls: ssl.SSLContext) -> Iterator[imaplib.IMAP4_SSL]:
    for raw in MESSAGES:
        imap_server.deliver(raw)
    connection = imaplib.IMAP4_SSL("127.0.0.1", imap_server.tls_port, ssl_context=client_tls)
    connection.login(USER, PASSWORD)
    connection.select("INBOX")
    yield connection
    connection.logout()


def test_capabilities_name_both_algorithms(client: imaplib.IMAP4_SSL) -> None:
    capabilities = set(client.capability()[1][0].decode().split())
    assert {"THREAD=ORDEREDSUBJECT", "THREAD=REFERENCES"} <= capabilities


def test_references_threads(client: imaplib.IMAP4_SSL) -> None:
    status, data = client.thread("REFERENCES", "UTF-8", "ALL")
    assert status == "OK"
    assert data == [b"(5)(1 (2 3)(4))((6)(7))"]


def test_uid_thread_names_uids(client: imaplib.IMAP4_SSL) -> None:
    client.store("1", "+FLAGS", "\\Deleted")
    client.expunge()  # sequence numbers now differ from UIDs
    status, data = client.uid("THREAD", "REFERENCES", "UTF-8", "ALL")
    # 1 is gone: its answers keep a dummy parent of their own (RFC 5256 §3 step 3).
    assert status == "OK" and data == [b"(5)((2 3)(4))((6)(7))"]
    status, data = client.thread("REFERENCES", "UTF-8", "ALL")
    assert data == [b"(4)((1 2)(3))((5)(6))"]


def test_ordered_subject(client: imaplib.IMAP4_SSL) -> None:
    status, data = client.thread("ORDEREDSUBJECT", "UTF-8", "ALL")
    assert status == "OK"
    # Base subjects: plans (1-4), lunch (5), old (6, 7); threads by their first date.
    assert data == [b"(5)(1 (2)(3)(4))(6 7)"]


def test_search_criteria_apply(client: imaplib.IMAP4_SSL) -> None:
    status, data = client.thread("REFERENCES", "UTF-8", "SUBJECT", "plans", "NOT", "4")
    assert status == "OK" and data == [b"(1 2 3)"]


def test_errors(client: imaplib.IMAP4_SSL) -> None:
    with pytest.raises(imaplib.IMAP4.error, match="unknown threading algorithm"):
        client.thread("NOSUCH", "UTF-8", "ALL")
    status, data = client.thread("REFERENCES", "X-NOSUCH-CHARSET", "ALL")
    assert status == "NO" and b"[BADCHARSET" in data[0]
