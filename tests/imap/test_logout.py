"""LOGOUT (RFC 9051 §6.1.3): `* BYE` is the last untagged response; mailbox updates that
were pending when the client logged out go before it, never after."""

from __future__ import annotations

import ssl

from tests.imap.conftest import ImapThread, login_raw, simple_message


def test_pending_updates_go_before_bye(imap_server: ImapThread,
                                       client_tls: ssl.SSLContext) -> None:
    imap_server.deliver(simple_message("first"))
    client = login_raw(imap_server, client_tls)
    client.command(b"s", b"SELECT INBOX")
    other = login_raw(imap_server, client_tls)
    other.command(b"s", b"SELECT INBOX")
    other.command(b"f", b"STORE 1 +FLAGS (\\Flagged)")
    imap_server.deliver(simple_message("second"))
    answer = client.command(b"o", b"LOGOUT")
    assert answer[-2:] == [b"* BYE postroom logging out", b"o OK LOGOUT completed"]
    assert b"* 2 EXISTS" in answer
    assert any(line.startswith(b"* 1 FETCH (UID 1 FLAGS (") and b"\\Flagged" in line
               for line in answer)  # fmt: skip


def test_logout_with_nothing_pending(imap_server: ImapThread,
                                     client_tls: ssl.SSLContext) -> None:
    client = login_raw(imap_server, client_tls)
    assert client.command(b"o", b"LOGOUT") == [b"* BYE postroom logging out",
                                               b"o OK LOGOUT completed"]  # fmt: skip
