"""LOGIN/SELECT/FETCH/STORE/SEARCH/IDLE through imaplib and a raw socket (real sockets)."""

from __future__ import annotations

import imaplib
import ssl

import pytest

from tests.conftest import TEST_HOSTNAME
from tests.imap.conftest import (
    PASSWORD,
    USER,
    ImapThread,
    RawClient,
    login_raw,
    simple_message,
)


def connect(server: ImapThread, client_tls: ssl.SSLContext) -> imaplib.IMAP4_SSL:
    client = imaplib.IMAP4_SSL("127.0.0.1", server.tls_port, ssl_context=client_tls,
                               timeout=10)
    client.login(USER, PASSWORD)
    return client


def test_greeting_and_logindisabled_before_starttls(imap_server: ImapThread) -> None:
    client = RawClient(imap_server.port)
    assert client.greeting.startswith(b"* OK [CAPABILITY IMAP4rev2 IMAP4rev1")
    assert b"LOGINDISABLED" in client.greeting and b"STARTTLS" in client.greeting
    assert b"AUTH=" not in client.greeting
    reply = client.command(b"a", f"LOGIN {USER} x".encode())
    assert reply[-1].startswith(b"a NO [PRIVACYREQUIRED]")
    reply = client.command(b"b", b"AUTHENTICATE PLAIN AGFsaWNlAHg=")
    assert reply[-1].startswith(b"b NO [PRIVACYREQUIRED]")
    client.close()


def test_starttls_then_login(imap_server: ImapThread, client_tls: ssl.SSLContext) -> None:
    client = imaplib.IMAP4("127.0.0.1", imap_server.port, timeout=10)
    client._host = TEST_HOSTNAME  # type: ignore[attr-defined]  # verify the cert name
    client.starttls(ssl_context=client_tls)
    assert "AUTH=PLAIN" in client.capabilities
    typ, _data = client.login(USER, PASSWORD)
    assert typ == "OK"
    client.logout()


def test_starttls_discards_pipelined_commands(imap_server: ImapThread,
                                              client_tls: ssl.SSLContext) -> None:
    client = RawClient(imap_server.port)
    # The injected command rides in the same packet as STARTTLS; it must never run.
    client.send(b"s STARTTLS\r\nx CAPABILITY\r\n")
    assert client.line().startswith(b"s OK")
    assert client.buffer == b""
    client.sock = client_tls.wrap_socket(client.sock, server_hostname=TEST_HOSTNAME)
    reply = client.command(b"y", b"NOOP")
    assert reply == [b"y OK NOOP completed"]
    client.close()


def test_login_failure_and_authenticate(imap_server: ImapThread,
                                        client_tls: ssl.SSLContext) -> None:
    client = imaplib.IMAP4_SSL("127.0.0.1", imap_server.tls_port, ssl_context=client_tls,
                               timeout=10)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        client.login(USER, "wrong")
    typ, _ = client.authenticate("PLAIN", lambda _: f"\0{USER}\0{PASSWORD}".encode())
    assert typ == "OK"
    client.logout()
    raw = RawClient(imap_server.tls_port, tls=client_tls)
    raw.send(b"a AUTHENTICATE LOGIN\r\n")
    assert raw.line() == b"+ VXNlcm5hbWU6"
    raw.send(b"YWxpY2VAZXhhbXBsZS50ZXN0\r\n")
    assert raw.line() == b"+ UGFzc3dvcmQ6"
    import base64
    raw.send(base64.b64encode(PASSWORD.encode()) + b"\r\n")
    assert raw.until_tagged(b"a")[-1].startswith(b"a OK [CAPABILITY IMAP4rev2")
    raw.close()


def test_select_fetch_store_search(imap_server: ImapThread, client_tls: ssl.SSLContext) -> None:
    for index in range(3):
        imap_server.deliver(simple_message(f"subject {index}", f"body number {index}\r\n"))
    client = connect(imap_server, client_tls)
    typ, data = client.select("INBOX")
    assert (typ, data) == ("OK", [b"3"])
    assert client.untagged_responses.get("RECENT") == [b"3"]
    typ, data = client.fetch("1:*", "(UID FLAGS RFC822.SIZE)")
    assert typ == "OK" and len(data) == 3
    assert b"UID 1 FLAGS (\\Recent)" in data[0]
    typ, data = client.fetch("2", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert data[0][1] == b"Subject: subject 1\r\n\r\n"
    typ, data = client.fetch("2", "(BODY[TEXT])")
    assert data[0][1] == b"body number 1\r\n"
    assert b"\\Seen" in data[1] if len(data) > 1 else b"\\Seen" in data[0][0]
    typ, data = client.store("3", "+FLAGS", "(\\Flagged $Work)")
    assert b"FLAGS (" in data[0] and b"\\Flagged" in data[0] and b"$Work" in data[0]
    assert client.search(None, "UNSEEN") == ("OK", [b"1 3"])
    assert client.search(None, "FLAGGED") == ("OK", [b"3"])
    assert client.search(None, "KEYWORD", "$work") == ("OK", [b"3"])
    assert client.search(None, "SUBJECT", '"subject 2"') == ("OK", [b"3"])
    assert client.search(None, "BODY", '"NUMBER 0"') == ("OK", [b"1"])
    assert client.search(None, "OR", "SEEN", "FLAGGED") == ("OK", [b"2 3"])
    assert client.uid("SEARCH", "UID", "2:*") == ("OK", [b"2 3"])
    assert client.search(None, "FROM", "carol") == ("OK", [b"1 2 3"])
    assert client.search(None, "SENTON", "7-Feb-1994") == ("OK", [b"1 2 3"])
    client.logout()


def test_idle_gets_new_mail(imap_server: ImapThread, client_tls: ssl.SSLContext) -> None:
    client = login_raw(imap_server, client_tls)
    client.command(b"s", b"SELECT INBOX")
    client.send(b"i IDLE\r\n")
    assert client.line() == b"+ idling"
    imap_server.deliver(simple_message("new"))
    client.sock.settimeout(1.0)  # RFC 2177 push: within a second
    assert client.line() == b"* 1 EXISTS"
    assert client.line() == b"* 1 RECENT"
    client.sock.settimeout(10)
    client.send(b"DONE\r\n")
    assert client.until_tagged(b"i")[-1] == b"i OK IDLE terminated"
    client.close()


def test_authenticate_sasl_ir_and_cancel(imap_server: ImapThread,
                                         client_tls: ssl.SSLContext) -> None:
    import base64

    client = RawClient(imap_server.tls_port, tls=client_tls)
    assert b"AUTH=PLAIN" in client.greeting and b"SASL-IR" in client.greeting
    client.send(b"a AUTHENTICATE PLAIN\r\n")
    assert client.line() == b"+ "
    client.send(b"*\r\n")
    assert client.until_tagged(b"a") == [b"a BAD authentication cancelled"]
    token = base64.b64encode(f"\0{USER}\0wrong".encode())
    assert client.command(b"b", b"AUTHENTICATE PLAIN " + token)[0].startswith(
        b"b NO [AUTHENTICATIONFAILED]")
    token = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode())
    lines = client.command(b"c", b"AUTHENTICATE PLAIN " + token)  # RFC 4959 SASL-IR
    assert lines[-1].startswith(b"c OK [CAPABILITY IMAP4rev2 ")
    assert client.command(b"d", b"SELECT INBOX")[-1] == b"d OK [READ-WRITE] SELECT completed"
    client.close()
