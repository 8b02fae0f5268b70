"""SEARCH corners of issue 17, on real sockets: addresses with comments inside them,
ESEARCH MIN/MAX with MODSEQ (RFC 4731 §3.2, RFC 7162 §3.1.5), CHARSET with any charset a
Python codec decodes (RFC 9051 §6.4.4), PARTIAL (RFC 9394) and CONTEXT=SEARCH UPDATE
contexts (RFC 5267 §4)."""

from __future__ import annotations

import imaplib
import re
import ssl
from collections.abc import Iterator

import pytest

from postroom.imap.commands.resultcontext import MAX_UPDATE_CONTEXTS
from postroom.imap.wire.lexer import Lexer, ParseError
from postroom.imap.wire.search import (
    PartialRange,
    charset_codec,
    ordered_set,
    parse_partial_range,
)
from tests.imap.conftest import (
    PASSWORD,
    USER,
    ImapThread,
    RawClient,
    login_raw,
    simple_message,
)

COMMENTED = (b"From: <user-from (comment)@ (comment) domain.org>\r\n"
             b"To: <user-to (comment)@ (comment) domain.org>\r\n"
             b"Cc: Carol (the boss) <user-cc (comment)@ (comment) domain.org>\r\n"
             b"Bcc: user-bcc (comment)@ (comment) domain.org\r\n"
             b"Subject: =?utf-8?q?K=C3=B6ln_=D0=9C=D0=B8=D1=80_=E6=97=A5=E6=9C=AC?=\r\n"
             b"\r\nbody\r\n")  # fmt: skip


def _selected(server: ImapThread, client_tls: ssl.SSLContext) -> RawClient:
    client = login_raw(server, client_tls)
    assert client.command(b"S", b"SELECT INBOX")[-1].startswith(b"S OK")
    return client


@pytest.fixture
def client(imap_server: ImapThread, client_tls: ssl.SSLContext) -> Iterator[RawClient]:
    imap_server.deliver(simple_message("plain"))
    imap_server.deliver(COMMENTED)
    imap_server.deliver(simple_message("third"))
    raw = _selected(imap_server, client_tls)
    yield raw
    raw.close()


def _search(client: RawClient, text: bytes) -> list[int]:
    lines = client.command(b"Q", text)
    assert lines[-1].startswith(b"Q OK"), lines
    found = next(line for line in lines if line.startswith(b"* SEARCH"))
    return [int(word) for word in found[len(b"* SEARCH"):].split()]


# -- addresses with comments ------------------------------------------------------------------
def test_address_keys_match_addresses_with_comments_inside(
    imap_server: ImapThread, client_tls: ssl.SSLContext
) -> None:
    imap_server.deliver(simple_message("plain"))
    imap_server.deliver(COMMENTED)
    imap = imaplib.IMAP4_SSL("127.0.0.1", imap_server.tls_port, ssl_context=client_tls)
    try:
        imap.login(USER, PASSWORD)
        imap.select("INBOX")
        for key, address in (("FROM", "user-from"), ("TO", "user-to"), ("CC", "user-cc"),
                             ("BCC", "user-bcc")):  # fmt: skip
            typ, data = imap.search(None, key, f"{address}@domain.org")
            assert (typ, data) == ("OK", [b"2"]), key
        assert imap.search(None, "CC", '"Carol <user-cc@domain.org>"')[1] == [b"2"]
        # The comments are no part of an address; HEADER still reads the field as written.
        assert imap.search(None, "FROM", "comment")[1] == [b""]
        assert imap.search(None, "HEADER", "From", "comment")[1] == [b"2"]
        # Plain addresses and display names match as before.
        assert imap.search(None, "FROM", '"Carol <carol@example.org>"')[1] == [b"1"]
        assert imap.search(None, "TO", "alice@example")[1] == [b"1"]
    finally:
        imap.logout()


# -- MIN/MAX with MODSEQ ------------------------------------------------------------------------
def _modseqs(client: RawClient) -> dict[int, int]:
    lines = client.command(b"M", b"FETCH 1:* (MODSEQ)")
    found = (re.match(rb"\* (\d+) FETCH \(MODSEQ \((\d+)\)\)", line) for line in lines)
    return {int(m.group(1)): int(m.group(2)) for m in found if m}


def test_esearch_min_max_report_the_modseq_of_that_message(client: RawClient) -> None:
    assert client.command(b"s", b"STORE 2 +FLAGS (x1)")[-1].startswith(b"s OK")
    assert client.command(b"t", b"STORE 3 +FLAGS (x2)")[-1].startswith(b"t OK")
    assert client.command(b"u", b"STORE 1 +FLAGS (x3)")[-1].startswith(b"u OK")
    modseqs = _modseqs(client)
    assert modseqs[1] > modseqs[3] > modseqs[2]
    lines = client.command(b"A", b"SEARCH RETURN (MIN) MODSEQ 1")
    assert lines[0] == b'* ESEARCH (TAG "A") MIN 1 MODSEQ %d' % modseqs[1]
    lines = client.command(b"B", b"SEARCH RETURN (MAX) MODSEQ 1")
    assert lines[0] == b'* ESEARCH (TAG "B") MAX 3 MODSEQ %d' % modseqs[3]
    lines = client.command(b"C", b"SEARCH RETURN (MAX) 2:3 MODSEQ 1")
    assert lines[0] == b'* ESEARCH (TAG "C") MAX 3 MODSEQ %d' % modseqs[3]
    lines = client.command(b"D", b"SEARCH RETURN (MIN MAX) 2:3 MODSEQ 1")
    assert lines[0] == b'* ESEARCH (TAG "D") MIN 2 MAX 3 MODSEQ %d' % modseqs[3]
    # COUNT or ALL return every match: the highest of all of them.
    lines = client.command(b"E", b"SEARCH RETURN (MAX COUNT) 2:3 MODSEQ 1")
    assert lines[0] == b'* ESEARCH (TAG "E") MAX 3 COUNT 2 MODSEQ %d' % modseqs[3]
    lines = client.command(b"F", b"SEARCH RETURN (MAX COUNT) MODSEQ 1")
    assert lines[0] == b'* ESEARCH (TAG "F") MAX 3 COUNT 3 MODSEQ %d' % modseqs[1]


# -- CHARSET ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("charset", "text"), [
    ("ISO-8859-1", "Köln"), ("latin1", "Köln"), ("ISO-8859-15", "Köln"),
    ("WINDOWS-1252", "Köln"), ("windows-1251", "Мир"), ("KOI8-R", "Мир"),
    ("ISO-8859-5", "Мир"), ("GB2312", "日本"), ("GBK", "日本"), ("BIG5", "日本"),
    ("Shift_JIS", "日本"), ("EUC-JP", "日本"), ("EUC-KR", "日本"),
])  # fmt: skip
def test_search_charset_decodes_the_strings(client: RawClient, charset: str,
                                            text: str) -> None:  # fmt: skip
    data = text.encode(charset)
    command = b"SEARCH CHARSET %s SUBJECT {%d+}\r\n%s" % (charset.encode(), len(data), data)
    assert _search(client, command) == [2]


@pytest.mark.parametrize("charset", [b"X-NOPE", b"BASE64", b"rot13", b"zlib", b"hex",
                                     b"unicode_escape", b"A" * 200])  # fmt: skip
def test_search_badcharset_only_for_names_no_codec_decodes(client: RawClient,
                                                           charset: bytes) -> None:  # fmt: skip
    lines = client.command(b"c", b"SEARCH CHARSET " + charset + b" TEXT x")
    assert lines[-1].startswith(b'c NO [BADCHARSET ("UTF-8" "US-ASCII" '), lines[-1]


def test_search_string_that_does_not_decode_is_bad(client: RawClient) -> None:
    assert client.command(b"c", b"SEARCH CHARSET UTF-8 TEXT {1+}\r\n\xff")[-1].startswith(b"c BAD")
    assert client.command(b"d", b"SEARCH CHARSET SHIFT_JIS TEXT {1+}\r\n\x81")[-1].startswith(
        b"d BAD")


def test_charset_codec() -> None:
    assert charset_codec("utf-8") == charset_codec("US-ASCII") == "utf-8"
    assert charset_codec("ISO-8859-2") == "iso8859-2"
    assert charset_codec("base64") is None and charset_codec("x" * 65) is None
    assert charset_codec("ünï") is None and charset_codec("idna") is None


# -- PARTIAL (RFC 9394) -------------------------------------------------------------------------
def test_search_return_partial(client: RawClient) -> None:
    assert client.command(b"a", b"SEARCH RETURN (PARTIAL 1:2) ALL")[0] == \
        b'* ESEARCH (TAG "a") PARTIAL (1:2 1:2)'  # fmt: skip
    assert client.command(b"b", b"UID SEARCH RETURN (PARTIAL -1:-2) ALL")[0] == \
        b'* ESEARCH (TAG "b") UID PARTIAL (-1:-2 2:3)'  # fmt: skip
    assert client.command(b"c", b"SEARCH RETURN (PARTIAL 3:2 COUNT) NOT 2")[0] == \
        b'* ESEARCH (TAG "c") COUNT 2 PARTIAL (2:3 3)'  # fmt: skip
    assert client.command(b"d", b"SEARCH RETURN (PARTIAL 5:9) ALL")[0] == \
        b'* ESEARCH (TAG "d") PARTIAL (5:9 NIL)'  # fmt: skip
    assert client.command(b"e", b"SEARCH RETURN (PARTIAL -3:-9) ALL")[0] == \
        b'* ESEARCH (TAG "e") PARTIAL (-3:-9 1)'  # fmt: skip
    for bad in (b"(PARTIAL 1:2 ALL)", b"(PARTIAL 1:2 PARTIAL 3:4)", b"(PARTIAL)",
                b"(PARTIAL 0:5)", b"(PARTIAL 1:*)", b"(PARTIAL -1:5)", b"(PARTIAL 5)",
                b"(PARTIAL 1:4294967296)"):  # fmt: skip
        assert client.command(b"f", b"SEARCH RETURN " + bad + b" ALL")[-1].startswith(b"f BAD")


def test_partial_with_save_keeps_what_partial_returned(client: RawClient) -> None:
    # RFC 9394 §3.2: SAVE with PARTIAL (no MIN/MAX/COUNT) saves the PARTIAL messages.
    client.command(b"a", b"SEARCH RETURN (SAVE PARTIAL 2:3) ALL")
    assert _search(client, b"SEARCH $") == [2, 3]
    client.command(b"b", b"SEARCH RETURN (SAVE PARTIAL 1:1 MAX) ALL")
    assert _search(client, b"SEARCH $") == [1, 3]
    client.command(b"c", b"SEARCH RETURN (SAVE PARTIAL 1:1 COUNT) ALL")
    assert _search(client, b"SEARCH $") == [1, 2, 3]


def test_partial_range_grammar() -> None:
    assert parse_partial_range(Lexer(b"500:400")) == PartialRange(400, 500)
    assert parse_partial_range(Lexer(b"-1:-100")) == PartialRange(1, 100, from_end=True)
    assert PartialRange(1, 100, True).render() == "-1:-100"
    assert list(PartialRange(2, 3).pick([7, 8, 9, 10])) == [8, 9]
    assert list(PartialRange(1, 2, True).pick([7, 8, 9, 10])) == [9, 10]
    assert list(PartialRange(4, 9, True).pick([7, 8, 9])) == []
    with pytest.raises(ParseError):
        parse_partial_range(Lexer(b"-1:2"))
    assert ordered_set([3, 1, 2, 5, 6, 9]) == "3,1:2,5:6,9"


# -- CONTEXT=SEARCH -----------------------------------------------------------------------------
def test_search_update_context_reports_additions_and_removals(
    imap_server: ImapThread, client: RawClient
) -> None:
    lines = client.command(b"U1", b"UID SEARCH RETURN (UPDATE) SUBJECT third")
    assert lines == [b'* ESEARCH (TAG "U1") UID', b"U1 OK UID SEARCH completed"]
    lines = client.command(b"U2", b"SEARCH RETURN (COUNT UPDATE) UNSEEN")
    assert lines[0] == b'* ESEARCH (TAG "U2") COUNT 3'
    imap_server.deliver(simple_message("third again"))
    lines = client.command(b"n", b"NOOP")
    assert b"* 4 EXISTS" in lines
    assert b'* ESEARCH (TAG "U1") UID ADDTO (0 4)' in lines
    assert b'* ESEARCH (TAG "U2") ADDTO (0 4)' in lines
    assert lines.index(b"* 4 EXISTS") < lines.index(b'* ESEARCH (TAG "U2") ADDTO (0 4)')
    client.command(b"s", b"STORE 2 +FLAGS.SILENT (\\Seen)")
    lines = client.command(b"n", b"NOOP")
    assert lines == [b'* ESEARCH (TAG "U2") REMOVEFROM (0 2)', b"n OK NOOP completed"]
    client.command(b"x", b"UID STORE 3 +FLAGS.SILENT (\\Deleted)")
    lines = client.command(b"e", b"EXPUNGE")
    # RFC 5267 §4.3.4: REMOVEFROM goes out before the EXPUNGE, while "3" still names it.
    assert lines[:3] == [b'* ESEARCH (TAG "U1") UID REMOVEFROM (0 3)',
                         b'* ESEARCH (TAG "U2") REMOVEFROM (0 3)', b"* 3 EXPUNGE"]
    assert client.command(b"c", b'CANCELUPDATE "U1" "U2"')[-1].startswith(b"c OK")
    imap_server.deliver(simple_message("third once more"))
    lines = client.command(b"n", b"NOOP")
    assert not any(line.startswith(b"* ESEARCH") for line in lines)


def test_update_contexts_are_limited_and_end_with_the_selection(
    imap_server: ImapThread, client: RawClient
) -> None:
    for number in range(MAX_UPDATE_CONTEXTS):
        tag = b"T%d" % number
        assert client.command(tag, b"SEARCH RETURN (UPDATE) ALL")[-1] == \
            tag + b" OK SEARCH completed"  # fmt: skip
    lines = client.command(b"X", b"SEARCH RETURN (COUNT UPDATE) ALL")
    # RFC 5267 §4.3.1: an untagged NO [NOUPDATE]; the other return options are honoured.
    assert lines == [b'* ESEARCH (TAG "X") COUNT 3',
                     b'* NO [NOUPDATE "X"] too many contexts to update', b"X OK SEARCH completed"]
    # §4.3: UPDATE under the tag of a live context is BAD.
    assert client.command(b"T0", b"SEARCH RETURN (UPDATE) ALL")[-1].startswith(b"T0 BAD")
    assert client.command(b"T0", b"SEARCH RETURN (COUNT) ALL")[-1].startswith(b"T0 OK")
    client.command(b"s", b"SELECT INBOX")
    imap_server.deliver(simple_message("fourth"))
    lines = client.command(b"n", b"NOOP")
    assert not any(line.startswith(b"* ESEARCH") for line in lines)
    assert client.command(b"Y", b"SEARCH RETURN (UPDATE) ALL")[-1] == b"Y OK SEARCH completed"


def _fetched(lines: list[bytes]) -> list[int]:
    return [int(line.split()[1]) for line in lines if b" FETCH (" in line]


def test_uid_fetch_partial(client: RawClient) -> None:
    """RFC 9394 §3.3: only the messages at these positions of those the UID set names."""
    assert _fetched(client.command(b"a", b"UID FETCH 1:* (FLAGS) (PARTIAL 1:2)")) == [1, 2]
    assert _fetched(client.command(b"b", b"UID FETCH 1:* (FLAGS) (PARTIAL -1:-1)")) == [3]
    assert _fetched(client.command(b"c", b"UID FETCH 2:* (UID) (PARTIAL -5:-1)")) == [2, 3]
    assert _fetched(client.command(b"d", b"UID FETCH 1,3 (UID) (PARTIAL 2:2)")) == [3]
    lines = client.command(b"e", b"UID FETCH 1:* (FLAGS) (PARTIAL 4:9)")
    assert lines == [b"e OK UID FETCH completed"]
    # §3.4: with CHANGEDSINCE, the positions count among the changed messages.
    client.command(b"s", b"STORE 1,3 +FLAGS.SILENT (x)")
    modseqs = _modseqs(client)
    since = min(modseqs[1], modseqs[3]) - 1
    lines = client.command(b"f", b"UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d PARTIAL -1:-1)"
                           % since)  # fmt: skip
    assert _fetched(lines) == [3]
    lines = client.command(b"g", b"UID FETCH 1:* (FLAGS) (PARTIAL 1:1 CHANGEDSINCE %d)"
                           % since)  # fmt: skip
    assert _fetched(lines) == [1]
    for bad in (b"FETCH 1:* FLAGS (PARTIAL 1:2)", b"UID FETCH 1:* FLAGS (PARTIAL 1:*)",
                b"UID FETCH 1:* FLAGS (PARTIAL -1:2)", b"UID FETCH 1:* FLAGS (PARTIAL)"):
        assert client.command(b"h", bad)[-1].startswith(b"h BAD"), bad
