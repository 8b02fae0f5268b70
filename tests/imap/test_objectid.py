"""OBJECTID (RFC 8474) over real sockets: MAILBOXID from CREATE, SELECT and STATUS, kept
by RENAME and never reused; EMAILID kept by COPY and MOVE and searchable; THREADID NIL."""

from __future__ import annotations

import imaplib
import re
import ssl
from collections.abc import Iterator

import pytest

from tests.imap.conftest import PASSWORD, USER, ImapThread

OBJECTID = re.compile(rb"^[A-Za-z0-9_-]{1,255}$")


@pytest.fixture
def client(imap_server: ImapThread, client_tls: ssl.SSLContext) -> Iterator[imaplib.IMAP4_SSL]:
    imap_server.deliver(b"Subject: one\r\n\r\nfirst\r\n")
    imap_server.deliver(b"Subject: two\r\n\r\nsecond\r\n")
    connection = imaplib.IMAP4_SSL("127.0.0.1", imap_server.tls_port, ssl_context=client_tls)
    connection.login(USER, PASSWORD)
    yield connection
    connection.logout()


def mailbox_id_of_create(client: imaplib.IMAP4_SSL, name: str) -> bytes:
    status, data = client.create(name)
    assert status == "OK"
    found = re.search(rb"\[MAILBOXID \(([^)]+)\)\]", data[0])
    assert found is not None, data
    return found.group(1)


def status_id(client: imaplib.IMAP4_SSL, name: str) -> bytes:
    status, data = client.status(name, "(MAILBOXID MESSAGES)")
    assert status == "OK"
    found = re.search(rb"MAILBOXID \(([^)]+)\)", data[0])
    assert found is not None, data
    return found.group(1)


def test_capability_is_advertised(client: imaplib.IMAP4_SSL) -> None:
    assert "OBJECTID" in client.capability()[1][0].decode().split()


def test_mailboxid_from_create_select_status_and_rename(client: imaplib.IMAP4_SSL) -> None:
    created = mailbox_id_of_create(client, "Projects")
    assert OBJECTID.match(created)
    assert status_id(client, "Projects") == created
    client.select("Projects")
    assert client.untagged_responses.get("MAILBOXID") == [b"(" + created + b")"]
    client.close()
    assert client.rename("Projects", "Work")[0] == "OK"
    assert status_id(client, "Work") == created  # §4.2: RENAME keeps it
    assert client.delete("Work")[0] == "OK"
    again = mailbox_id_of_create(client, "Work")
    assert again != created  # never reused by a mailbox made under the same name
    assert status_id(client, "INBOX") not in (created, again)


def test_emailid_survives_copy_and_move_and_is_searchable(client: imaplib.IMAP4_SSL) -> None:
    client.create("Archive")
    client.select("INBOX")
    status, data = client.fetch("1:2", "(EMAILID THREADID)")
    assert status == "OK"
    ids = [re.search(rb"EMAILID \(([^)]+)\)", item).group(1)  # type: ignore[union-attr]
           for item in data if isinstance(item, bytes)]
    assert len(set(ids)) == 2 and all(OBJECTID.match(one) for one in ids)
    assert all(b"THREADID NIL" in item for item in data if isinstance(item, bytes))
    status, data = client.search(None, "EMAILID", ids[1].decode())
    assert data == [b"2"]
    client.copy("1", "Archive")
    client.uid("MOVE", "2", "Archive")
    client.select("Archive")
    status, data = client.fetch("1:*", "(EMAILID)")
    moved = {re.search(rb"EMAILID \(([^)]+)\)", item).group(1)  # type: ignore[union-attr]
             for item in data if isinstance(item, bytes)}
    assert moved == set(ids)
    assert client.search(None, "THREADID", "T1")[1] == [b""]
    with pytest.raises(imaplib.IMAP4.error):
        client.search(None, "EMAILID", "not*an*id")
