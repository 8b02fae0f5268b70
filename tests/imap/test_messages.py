"""FETCH items on nested multiparts, APPEND, COPY/MOVE, EXPUNGE, UID stability."""

from __future__ import annotations

import imaplib
import ssl
from pathlib import Path

from tests.conftest import make_config
from tests.imap.conftest import (
    PASSWORD,
    USER,
    ImapThread,
    login_raw,
    simple_message,
)
from tests.imap.messages import NESTED, PDF, parse_list


def connect(server: ImapThread, client_tls: ssl.SSLContext) -> imaplib.IMAP4_SSL:
    client = imaplib.IMAP4_SSL("127.0.0.1", server.tls_port, ssl_context=client_tls,
                               timeout=10)
    client.login(USER, PASSWORD)
    return client


def test_bodystructure_and_envelope_of_nested_multipart(imap_server: ImapThread,
                                                        client_tls: ssl.SSLContext) -> None:
    imap_server.deliver(NESTED)
    raw = login_raw(imap_server, client_tls)
    raw.command(b"s", b"SELECT INBOX")
    lines = raw.command(b"f", b"FETCH 1 (BODYSTRUCTURE)")
    assert lines[-1] == b"f OK FETCH completed"
    prefix = b"* 1 FETCH (BODYSTRUCTURE "
    assert lines[0].startswith(prefix)
    structure = parse_list(lines[0][len(prefix) : -1])
    alternative, pdf, message = structure[0], structure[1], structure[2]
    assert structure[3] == "MIXED" and structure[4] == ["BOUNDARY", "outer"]
    plain, html = alternative[0], alternative[1]
    assert plain[:6] == ["TEXT", "PLAIN", ["CHARSET", "utf-8"], None, None, "QUOTED-PRINTABLE"]
    assert html[:2] == ["TEXT", "HTML"] and alternative[2] == "ALTERNATIVE"
    assert pdf[:2] == ["APPLICATION", "PDF"] and pdf[5] == "BASE64"
    assert pdf[8] == ["attachment", ["FILENAME", "report.pdf"]]
    assert message[:2] == ["MESSAGE", "RFC822"]
    assert message[7][1] == "forwarded"  # the embedded message's ENVELOPE subject
    assert message[8][:2] == ["TEXT", "PLAIN"]
    # Consecutive multipart children are not separated by a space (RFC 9051 §9).
    assert b')("TEXT" "HTML"' in lines[0]

    lines = raw.command(b"e", b"FETCH 1 (ENVELOPE BODY)")
    envelope = parse_list(lines[0][len(b"* 1 FETCH (ENVELOPE ") :].split(b" BODY (")[0])
    assert envelope[0] == "Tue, 05 Mar 2024 10:00:00 +0100"
    assert envelope[1] == "=?UTF-8?Q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?="
    assert envelope[2] == [["=?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?=", None, "jurgen", "example.de"]]
    assert envelope[5] == [["Alice", None, "alice", "example.test"],
                           [None, None, "bob", "example.test"]]
    assert envelope[6] == [["Team, Core", None, "team", "example.test"]]
    assert envelope[9] == "<nested@example.de>"
    raw.close()


def test_sections_binary_and_partial(imap_server: ImapThread, client_tls: ssl.SSLContext) -> None:
    imap_server.deliver(NESTED)
    client = connect(imap_server, client_tls)
    client.select("INBOX")

    def one(item: str) -> bytes:
        typ, data = client.fetch("1", f"({item})")
        assert typ == "OK", data
        return data[0][1]

    assert one("BODY.PEEK[1.1]") == b"Gr=C3=BC=C3=9Fe, the numbers are in the report."
    assert one("BODY.PEEK[1.2]") == b"<p>Gruesse</p>"
    assert one("BODY.PEEK[1.2.MIME]") == b"Content-Type: text/html; charset=utf-8\r\n\r\n"
    assert one("BINARY.PEEK[1.1]") == "Grüße, the numbers are in the report.".encode()
    assert one("BINARY.PEEK[2]") == PDF
    _typ, data = client.fetch("1", "(BINARY.SIZE[2] BINARY.SIZE[1.1])")
    assert f"BINARY.SIZE[2] {len(PDF)}".encode() in data[0]
    assert one("BODY.PEEK[3.HEADER]") == b"From: inner@example.org\r\nSubject: forwarded\r\n\r\n"
    assert one("BODY.PEEK[3.TEXT]") == b"inner body"
    assert one("BODY.PEEK[3.1]") == b"inner body"
    assert one("BODY.PEEK[]<0.4>") == b"From"
    assert one("BODY.PEEK[HEADER.FIELDS (MESSAGE-ID DATE)]") == (
        b"Date: Tue, 05 Mar 2024 10:00:00 +0100\r\nMessage-ID: <nested@example.de>\r\n\r\n")
    assert b"Subject" not in one("BODY.PEEK[HEADER.FIELDS.NOT (SUBJECT)]")
    assert one("BODY.PEEK[9]") == b""
    assert one("RFC822.HEADER").startswith(b"From: =?UTF-8?Q?J")
    assert one("BODY.PEEK[]") == NESTED
    _typ, data = client.fetch("1", "(FLAGS)")
    assert b"\\Seen" not in data[0]  # every fetch so far was PEEK or RFC822.HEADER
    _typ, data = client.fetch("1", "(BINARY[1.2])")
    assert b"FLAGS (\\Recent \\Seen)" in data[0][0] or b"\\Seen" in data[1]
    client.logout()


def test_partial_fetch_on_raw_socket(imap_server: ImapThread, client_tls: ssl.SSLContext) -> None:
    imap_server.deliver(simple_message("partial", "0123456789\r\n"))
    raw = login_raw(imap_server, client_tls)
    raw.command(b"s", b"EXAMINE INBOX")
    lines = raw.command(b"f", b"FETCH 1 (BODY[TEXT]<2.5>)")
    assert lines[0] == b"* 1 FETCH (BODY[TEXT]<2> {5}\r\n23456)"
    lines = raw.command(b"g", b"FETCH 1 (BODY[TEXT]<100.5> FLAGS)")
    # Read-only: no \Seen; \Recent, which EXAMINE reports without claiming (issue 17).
    assert lines[0] == b"* 1 FETCH (BODY[TEXT]<100> {0}\r\n FLAGS (\\Recent))"
    raw.close()


def test_search_decodes_headers_and_bodies(imap_server: ImapThread,
                                           client_tls: ssl.SSLContext) -> None:
    imap_server.deliver(simple_message("plain"))
    imap_server.deliver(NESTED)
    raw = login_raw(imap_server, client_tls)
    raw.command(b"s", b"SELECT INBOX")
    for key in ("SUBJECT Köln", "FROM Müller", "BODY Grüße", "TEXT köln", "BODY gruesse",
                "TO bob@example", "CC core"):
        name, value = key.split(" ", 1)
        data = value.encode()
        lines = raw.command(b"q", b"SEARCH CHARSET UTF-8 " + name.encode() + b" {%d+}\r\n%s"
                            % (len(data), data))
        assert lines[0] == b"* SEARCH 2", (key, lines)
    assert raw.command(b"h", b'SEARCH HEADER "Content-Type" ""')[0] == b"* SEARCH 2"
    assert raw.command(b"i", b"SEARCH HEADER Message-ID nested")[0] == b"* SEARCH 2"
    assert raw.command(b"l", b"SEARCH LARGER 500")[0] == b"* SEARCH 2"
    assert raw.command(b"n", b"SEARCH NOT LARGER 500 SINCE 1-Jan-2000")[0] == b"* SEARCH 1"
    assert raw.command(b"o", b"SEARCH SENTSINCE 1-Jan-2024")[0] == b"* SEARCH 2"
    assert raw.command(b"y", b"SEARCH YOUNGER 3600")[0] == b"* SEARCH 1 2"
    assert raw.command(b"z", b"SEARCH OLDER 3600")[0] == b"* SEARCH"
    lines = raw.command(b"c", b"SEARCH CHARSET X-NO-SUCH-CHARSET TEXT x")  # issue 17: KOI8-R works
    assert lines[-1].startswith(b'c NO [BADCHARSET ("UTF-8" "US-ASCII" ')
    raw.close()


def test_append_appenduid_flags_and_date(imap_server: ImapThread,
                                         client_tls: ssl.SSLContext) -> None:
    client = connect(imap_server, client_tls)
    typ, data = client.append("Drafts", "(\\Draft $Label1)", '"17-Jul-1996 02:44:25 -0700"',
                              NESTED)
    assert typ == "OK"
    uidvalidity = imap_server.call(imap_server.rt.store.get_account(USER))
    assert uidvalidity is not None
    assert data[0].startswith(b"[APPENDUID ") and data[0].split()[2] == b"1]"
    client.select("Drafts")
    typ, data = client.fetch("1", "(FLAGS INTERNALDATE RFC822.SIZE BODYSTRUCTURE)")
    assert b"\\Draft" in data[0] and b"$Label1" in data[0]
    assert b'INTERNALDATE "17-Jul-1996 02:44:25 -0700"' in data[0]
    assert f"RFC822.SIZE {len(NESTED)}".encode() in data[0]
    assert b'"MIXED"' in data[0]  # metadata computed at APPEND
    typ, data = client.append("Nowhere", None, None, b"Subject: x\r\n\r\nbody\r\n")
    assert typ == "NO" and b"[TRYCREATE]" in data[0]
    client.logout()


def test_copy_move_expunge(imap_server: ImapThread, client_tls: ssl.SSLContext) -> None:
    for index in range(4):
        imap_server.deliver(simple_message(f"m{index}"))
    client = connect(imap_server, client_tls)
    client.create("Archive")
    client.select("INBOX")
    typ, data = client.copy("1:2", "Archive")
    assert typ == "OK" and b"[COPYUID " in data[0] and data[0].split()[2:4] == [b"1:2", b"1:2]"]
    typ, data = client.copy("1", "Missing")
    assert typ == "NO" and b"[TRYCREATE]" in data[0]
    typ, data = client._simple_command("MOVE", "2", "Archive")
    assert typ == "OK"
    assert client.untagged_responses.pop("EXPUNGE") == [b"2"]
    assert b"COPYUID" in client.untagged_responses.pop("OK")[-1]
    typ, data = client.uid("MOVE", "4", "Archive")
    assert typ == "OK" and client.untagged_responses.pop("EXPUNGE") == [b"3"]
    client.store("1", "+FLAGS", "(\\Deleted)")
    typ, data = client.expunge()
    assert (typ, data) == ("OK", [b"1"])
    assert client.search(None, "ALL") == ("OK", [b"1"])  # only message uid 3 is left
    typ, data = client.fetch("1", "(UID)")
    assert data == [b"1 (UID 3)"]
    client.store("1", "+FLAGS", "(\\Deleted)")
    typ, data = client.uid("EXPUNGE", "1:2")  # UID EXPUNGE leaves UID 3 alone
    assert typ == "OK" and client.search(None, "ALL") == ("OK", [b"1"])
    client.uid("EXPUNGE", "3")
    assert client.search(None, "ALL") == ("OK", [b""])
    imap_server.deliver(simple_message("after"))
    client.noop()
    typ, data = client.fetch("1", "(UID)")
    assert data == [b"1 (UID 5)"]  # UIDs are never reused
    client.select("Archive")
    typ, data = client.uid("FETCH", "1:*", "(FLAGS)")
    assert [item.split(b" FLAGS")[0] for item in data] == [
        b"1 (UID 1", b"2 (UID 2", b"3 (UID 3", b"4 (UID 4"]
    typ, data = client.close()
    assert typ == "OK"
    client.logout()


def test_uidvalidity_stable_across_reopen(tmp_path: Path, server_cert: tuple[Path, Path],
                                          client_tls: ssl.SSLContext) -> None:
    config = make_config(tmp_path, server_cert)
    with ImapThread(config) as server:
        server.deliver(simple_message("keep"))
        client = connect(server, client_tls)
        client.select("INBOX")
        first = client.untagged_responses["UIDVALIDITY"]
        client.logout()
    from tests.imap.conftest import ImapThread as Again

    class Reopened(Again):
        async def _start(self) -> None:  # same DATA_DIR: accounts already exist
            import asyncio

            from postroom.imap.session import ImapServer

            self.runtime = await self._open_runtime()
            server = await asyncio.start_server(
                ImapServer(self.runtime, True).handle_connection, "127.0.0.1", 0,
                ssl=self.runtime.tls.listener_context())
            self._servers = [server]
            self.tls_port = server.sockets[0].getsockname()[1]

    with Reopened(config) as server:
        client = connect(server, client_tls)
        client.select("INBOX")
        assert client.untagged_responses["UIDVALIDITY"] == first
        _typ, data = client.fetch("1", "(UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert data[0][0].startswith(b"1 (UID 1 ") and b"keep" in data[0][1]
        client.logout()
