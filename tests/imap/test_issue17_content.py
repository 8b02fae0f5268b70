"""Issue 17, message content over real sockets: binary APPEND re-encoded (RFC 3516 §4.3),
quoted-printable BINARY decoding (RFC 2045 §6.7), ENVELOPE comment names, MULTIAPPEND
(RFC 3502), CATENATE (RFC 4469), PREVIEW (RFC 8970) and SAVEDATE (RFC 8514)."""

from __future__ import annotations

import base64
import imaplib
import re
import ssl
from pathlib import Path

from imap_tools import MailBox

from tests.conftest import make_config
from tests.imap.conftest import (
    PASSWORD,
    USER,
    ImapThread,
    RawClient,
    login_raw,
    simple_message,
)

PAYLOAD = bytes(range(256)) * 3 + b"\x00\r\n\x00tail"
BINARY_MESSAGE = (
    b"From: a@example.org\r\nSubject: binary\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=xx\r\n\r\n"
    b"--xx\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
    b"--xx\r\nContent-Type: application/octet-stream\r\n"
    b"Content-Transfer-Encoding: binary\r\n\r\n" + PAYLOAD + b"\r\n--xx--\r\n"
)
QP_MESSAGE = (
    b"From: a@example.org\r\nSubject: qp\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n"
    b"\r\nline one   \r\nsoft=  \r\nbreak=3D=C3=A9\t\r\nend"
)
QP_DECODED = "line one\r\nsoftbreak=é\r\nend".encode()


def connect(server: ImapThread, client_tls: ssl.SSLContext) -> imaplib.IMAP4_SSL:
    client = imaplib.IMAP4_SSL("127.0.0.1", server.tls_port, ssl_context=client_tls,
                               timeout=10)
    client.login(USER, PASSWORD)
    return client


def append_literal8(raw: RawClient, data: bytes, mailbox: bytes = b"INBOX") -> bytes:
    raw.send(b"A APPEND " + mailbox + b" ~{" + str(len(data)).encode() + b"}\r\n")
    assert raw.line().startswith(b"+")
    raw.send(data + b"\r\n")
    return raw.until_tagged(b"A")[-1]


def fetched(client: imaplib.IMAP4_SSL, items: str, uid: bytes = b"1") -> dict[str, bytes]:
    """`UID FETCH uid (items)` → {item name: literal or atom text}."""
    typ, data = client.uid("FETCH", uid.decode(), f"({items})")
    assert typ == "OK", data
    found: dict[str, bytes] = {}
    for piece in data:
        if isinstance(piece, tuple):
            name = re.findall(rb"([A-Z.]+\[[^\]]*\](?:<\d+>)?) [~]?\{\d+\}$", piece[0])[-1]
            found[name.decode()] = piece[1]
    return found


# -- 1. binary parts re-encoded at APPEND (RFC 3516 §4.3) ------------------------------------
def test_binary_append_is_served_7bit_to_body_and_decoded_to_binary(
        imap_server: ImapThread, client_tls: ssl.SSLContext) -> None:
    raw = login_raw(imap_server, client_tls)
    assert append_literal8(raw, BINARY_MESSAGE).startswith(b"A OK [APPENDUID ")
    raw.command(b"S", b"SELECT INBOX")
    raw.send(b"F UID FETCH 1 (BODY.PEEK[2] BODY.PEEK[])\r\n")
    response = raw.sock.recv(1)  # read the whole answer as bytes
    while not response.endswith(b"F OK UID FETCH completed\r\n"):
        response += raw.sock.recv(65536)
    assert b"~{" not in response  # no literal8 for a non-BINARY fetch
    assert b"\x00" not in response
    client = connect(imap_server, client_tls)
    client.select("INBOX")
    items = fetched(client, "BODY.PEEK[2] BODY.PEEK[2.MIME] BINARY.PEEK[2] BINARY.PEEK[1]")
    assert base64.b64decode(items["BODY[2]"]) == PAYLOAD
    assert b"Content-Transfer-Encoding: base64" in items["BODY[2.MIME]"]
    assert items["BINARY[2]"] == PAYLOAD
    assert items["BINARY[1]"] == b"hello"
    _typ, data = client.uid("FETCH", "1", "(BINARY.SIZE[2])")
    assert f"BINARY.SIZE[2] {len(PAYLOAD)}".encode() in data[0]
    client.logout()


def test_single_part_binary_message_with_nul(imap_server: ImapThread,
                                             client_tls: ssl.SSLContext) -> None:
    message = (b"From: a@example.org\r\nSubject: one part\r\nContent-Type: image/png\r\n"
               b"Content-Transfer-Encoding: binary\r\n\r\n\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    raw = login_raw(imap_server, client_tls)
    assert append_literal8(raw, message).startswith(b"A OK")
    client = connect(imap_server, client_tls)
    client.select("INBOX")
    items = fetched(client, "BODY.PEEK[] BINARY.PEEK[1]")
    assert b"\x00" not in items["BODY[]"] and b"Subject: one part" in items["BODY[]"]
    assert items["BINARY[1]"] == b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"


# -- 2. quoted-printable BINARY (RFC 2045 §6.7) ----------------------------------------------
def test_binary_fetch_of_quoted_printable(imap_server: ImapThread,
                                          client_tls: ssl.SSLContext) -> None:
    imap_server.deliver(QP_MESSAGE)
    client = connect(imap_server, client_tls)
    client.select("INBOX")
    items = fetched(client, "BINARY.PEEK[1] BINARY.PEEK[1]<2.9>")
    assert items["BINARY[1]"] == QP_DECODED
    assert items["BINARY[1]<2>"] == QP_DECODED[2:11]
    _typ, data = client.uid("FETCH", "1", "(BINARY.SIZE[1])")
    assert f"BINARY.SIZE[1] {len(QP_DECODED)}".encode() in data[0]
    client.logout()


# -- 3. ENVELOPE: a comment names the mailbox -----------------------------------------------
def test_envelope_comment_is_the_personal_name(imap_server: ImapThread,
                                               client_tls: ssl.SSLContext) -> None:
    imap_server.deliver(b"From: user@domain.example (Real Name)\r\nTo: alice@example.test\r\n"
                        b"Subject: c\r\n\r\nbody\r\n")
    client = connect(imap_server, client_tls)
    client.select("INBOX")
    typ, data = client.fetch("1", "(ENVELOPE)")
    assert typ == "OK"
    expected = b'(("Real Name" NIL "user" "domain.example"))'
    assert data[0].count(expected) == 3  # from, sender and reply-to
    client.logout()


# -- 4. MULTIAPPEND (RFC 3502) ----------------------------------------------------------------
def test_multiappend_stores_all_with_one_appenduid(imap_server: ImapThread,
                                                    client_tls: ssl.SSLContext) -> None:
    raw = login_raw(imap_server, client_tls)
    assert b"MULTIAPPEND" in raw.command(b"C", b"CAPABILITY")[0]
    first, second = simple_message("one"), simple_message("two")
    reply = raw.command(b"A", b"APPEND Drafts (\\Seen) {%d+}\r\n%b (\\Flagged) {%d+}\r\n%b" % (
        len(first), first, len(second), second))[-1]
    assert re.fullmatch(rb"A OK \[APPENDUID \d+ 1:2\] APPEND completed", reply), reply
    rows = imap_server.messages("Drafts")
    assert [row.flags for row in rows] == [{"\\Seen"}, {"\\Flagged"}]


def test_multiappend_failure_of_a_later_message_keeps_none(
        imap_server: ImapThread, client_tls: ssl.SSLContext) -> None:
    raw = login_raw(imap_server, client_tls)
    first = simple_message("one")
    reply = raw.command(b"A", b"APPEND Drafts {%d+}\r\n%b {0+}\r\n" % (len(first), first))[-1]
    assert not reply.startswith(b"A OK")
    assert imap_server.messages("Drafts") == []


# -- 5. CATENATE (RFC 4469) -------------------------------------------------------------------
NESTED_SOURCE = (
    b"From: b@example.org\r\nSubject: source\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=zz\r\n\r\n"
    b"--zz\r\nContent-Type: text/plain\r\n\r\nfirst part\r\n"
    b"--zz\r\nContent-Type: text/plain\r\n\r\nsecond part\r\n--zz--\r\n"
)


def _uidvalidity(raw: RawClient, mailbox: bytes = b"INBOX") -> int:
    line = raw.command(b"V", b"STATUS " + mailbox + b" (UIDVALIDITY)")[0]
    return int(re.search(rb"UIDVALIDITY (\d+)", line).group(1))  # type: ignore[union-attr]


def test_catenate_text_and_urls(imap_server: ImapThread, client_tls: ssl.SSLContext) -> None:
    imap_server.deliver(NESTED_SOURCE)
    raw = login_raw(imap_server, client_tls)
    assert b"CATENATE" in raw.command(b"C", b"CAPABILITY")[0]
    validity = _uidvalidity(raw)
    header = b"From: me@example.test\r\nSubject: forward\r\n\r\n"
    tail = b"\r\n-- sig\r\n"
    command = (b'APPEND Drafts CATENATE (TEXT {%d+}\r\n%b URL "/INBOX;UIDVALIDITY=%d/;UID=1'
               b'/;SECTION=2" URL "/INBOX/;UID=1/;SECTION=1/;PARTIAL=0.5" TEXT {%d+}\r\n%b)'
               % (len(header), header, validity, len(tail), tail))
    reply = raw.command(b"A", command)[-1]
    assert re.fullmatch(rb"A OK \[APPENDUID \d+ 1\] APPEND completed", reply), reply
    client = connect(imap_server, client_tls)
    client.select("Drafts")
    assert fetched(client, "BODY.PEEK[]")["BODY[]"] == header + b"second part" + b"first" + tail
    # A whole message by URL, then MULTIAPPEND of a CATENATE and a plain literal.
    plain = simple_message("plain")
    reply = raw.command(b"B", b'APPEND Drafts CATENATE (URL "/INBOX/;UID=1") {%d+}\r\n%b'
                        % (len(plain), plain))[-1]
    assert re.fullmatch(rb"B OK \[APPENDUID \d+ 2:3\] APPEND completed", reply), reply
    assert fetched(client, "BODY.PEEK[]", b"2")["BODY[]"] == NESTED_SOURCE
    client.logout()


def test_catenate_bad_urls(imap_server: ImapThread, client_tls: ssl.SSLContext) -> None:
    imap_server.deliver(NESTED_SOURCE)
    raw = login_raw(imap_server, client_tls)
    validity = _uidvalidity(raw)
    for url in (b"/INBOX/;UID=7", b"/INBOX;UIDVALIDITY=%d/;UID=1" % (validity + 1),
                b"/Nowhere/;UID=1", b"/INBOX/;UID=1/;SECTION=9", b"/INBOX/;UID=1;URLAUTH=x",
                b"imap://mallory@example.test/INBOX/;UID=1", b"imap://other.host/INBOX/;UID=1"):
        reply = raw.command(b"A", b'APPEND Drafts CATENATE (TEXT {3+}\r\nabc URL "%b")' % url)
        assert reply[-1].startswith(b"A NO [BADURL " + url), reply
    reply = raw.command(b"C", b'APPEND Drafts CATENATE (URL "/IN BOX]/;UID=1")')[-1]
    assert reply.startswith(b"C NO [BADURL /IN%20BOX%5D/;UID=1] ")  # one resp-text-code
    assert imap_server.messages("Drafts") == []
    assert raw.command(b"B", b"APPEND Drafts CATENATE ()")[-1].startswith(b"B BAD")


def test_catenate_too_big(tmp_path: Path, server_cert: tuple[Path, Path],
                          client_tls: ssl.SSLContext) -> None:
    with ImapThread(make_config(tmp_path, server_cert, POSTFIX_MESSAGE_SIZE_LIMIT=3000)) as server:
        server.deliver(simple_message("big", "x" * 2000 + "\r\n"))
        raw = login_raw(server, client_tls)
        reply = raw.command(b"A", b'APPEND Drafts CATENATE (URL "/INBOX/;UID=1"'
                            b' URL "/INBOX/;UID=1")')[-1]
        assert reply.startswith(b"A NO [TOOBIG]")
        # Small pieces of a large message add up to little, but each reads it whole.
        parts = b" ".join([b'URL "/INBOX/;UID=1/;PARTIAL=0.1"'] * 7)
        reply = raw.command(b"B", b"APPEND Drafts CATENATE (" + parts + b")")[-1]
        assert reply.startswith(b"B NO [LIMIT]")
        assert server.messages("Drafts") == []


def test_imap_tools_append_of_binary_attachment(imap_server: ImapThread,
                                                 client_tls: ssl.SSLContext) -> None:
    with MailBox("127.0.0.1", port=imap_server.tls_port, ssl_context=client_tls).login(
            USER, PASSWORD, initial_folder="INBOX") as mailbox:
        raw = login_raw(imap_server, client_tls)
        assert append_literal8(raw, BINARY_MESSAGE).startswith(b"A OK")
        [message] = list(mailbox.fetch(mark_seen=False))
        parts = list(message.obj.walk())
        assert parts[2].get_payload(decode=True) == PAYLOAD
        assert parts[2]["Content-Transfer-Encoding"] == "base64"


# -- 6. PREVIEW (RFC 8970) --------------------------------------------------------------------
HTML_ONLY = (
    b"From: a@example.org\r\nSubject: html\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=pp\r\n\r\n"
    b"--pp\r\nContent-Type: text/html; charset=iso-8859-1\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"<html><head><style>p {color: red}</style><title>T</title></head><body>"
    b"<p>Gr=FC=DFe&nbsp;aus<br>K=F6ln</p><script>alert(1)</script>" + b" word" * 100
    + b"</body></html>\r\n--pp\r\nContent-Type: text/plain\r\n"
    b"Content-Disposition: attachment\r\n\r\nnot this\r\n--pp--\r\n"
)


def test_preview_of_plain_html_and_empty(imap_server: ImapThread,
                                         client_tls: ssl.SSLContext) -> None:
    imap_server.deliver(simple_message("plain", "Hello\r\n  there,\r\n\r\nsee you\r\n"))
    imap_server.deliver(HTML_ONLY)
    imap_server.deliver(b"From: a@example.org\r\nSubject: none\r\nContent-Type: image/png\r\n"
                        b"\r\nxxxx")
    raw = login_raw(imap_server, client_tls)
    assert b"PREVIEW" in raw.command(b"C", b"CAPABILITY")[0].split()
    raw.command(b"S", b"SELECT INBOX")
    lines = raw.command(b"F", b"FETCH 1:3 (PREVIEW)")
    assert lines[0] == b'* 1 FETCH (PREVIEW "Hello there, see you")'
    html_line = lines[1].decode("utf-8")
    assert html_line.startswith("* 2 FETCH (PREVIEW {")
    text = html_line.split("\r\n", 1)[1]
    assert text.startswith("Grüße aus Köln word word") and "alert" not in text
    assert len(text.removesuffix(")")) == 200
    assert lines[2] == b'* 3 FETCH (PREVIEW "")'
    lazy = raw.command(b"L", b"UID FETCH 1 (UID PREVIEW (LAZY) FLAGS)")
    assert lazy[0] == b'* 1 FETCH (UID 1 PREVIEW "Hello there, see you" FLAGS (\\Recent))'
    assert raw.command(b"B", b"FETCH 1 (PREVIEW (EAGER))")[-1].startswith(b"B BAD")


# -- 7. SAVEDATE (RFC 8514) -------------------------------------------------------------------
def test_savedate_fetch_and_search(imap_server: ImapThread, client_tls: ssl.SSLContext) -> None:
    imap_server.deliver(simple_message("saved"))
    [row] = imap_server.messages()
    assert row.saved_date is not None
    client = connect(imap_server, client_tls)
    typ, caps = client.capability()
    assert b"SAVEDATE" in caps[0].split()
    client.select("INBOX")
    typ, data = client.fetch("1", "(SAVEDATE)")
    day = row.saved_date.strftime("%d-%b-%Y")
    assert typ == "OK" and f'SAVEDATE "{day}'.encode() in data[0]
    typ, data = client.search(None, "SAVEDON", day)
    assert data == [b"1"]
    typ, data = client.search(None, "SAVEDSINCE", day, "SAVEDATESUPPORTED")
    assert data == [b"1"]
    typ, data = client.search(None, "SAVEDBEFORE", day)
    assert data == [b""]
    typ, data = client.search(None, "NOT", "SAVEDSINCE", "1-Jan-2100")
    assert data == [b"1"]
    client.logout()
