"""The header-list FETCH path (imap/commands/fetch.py `_fetch_headers`): headers read up to
their empty line, without metadata, give exactly what the general path gives."""

from __future__ import annotations

import io
import ssl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postroom.imap.commands import fetch
from postroom.mail.mimetree import parse_message
from tests.imap.conftest import ImapThread, login_raw, simple_message
from tests.imap.messages import NESTED

LONG_HEADER = (b"Subject: long\r\n" + b"".join(b"X-Filler-%d: %s\r\n" % (n, b"y" * 70)
                                              for n in range(300))
               + b"From: a@example.org\r\n\r\nbody\r\n")  # fmt: skip
# Over the SQLite store's 64 KiB of small bodies: a file, read on a thread; the small ones
# of the same FETCH are in memory (`BlobStore.in_memory`).
LARGE_BODY = b"Subject: large\r\nFrom: b@example.org\r\n\r\n" + (b"z" * 76 + b"\r\n") * 1000


@pytest.mark.parametrize("raw", [
    NESTED, LONG_HEADER, b"\r\nno header at all\r\n", b"\nbare\n", b"Subject: x\n\nbare LF\n",
    b"Subject: no empty line\r\nX: y\r\n", b"", b"Subject: only\r\n\r\n",
])
@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 8192])
def test_header_block_is_the_parsed_header(monkeypatch: pytest.MonkeyPatch, raw: bytes,
                                           chunk: int) -> None:
    monkeypatch.setattr(fetch, "_HEADER_CHUNK", chunk)
    assert fetch.read_header_block(io.BytesIO(raw)) == raw[: parse_message(raw).root.body_start]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([b"A: b", b"\r\n", b"\n", b"\r", b" c", b"x"]), max_size=30),
       st.integers(1, 9))
def test_header_block_matches_for_any_line_breaks(parts: list[bytes], chunk: int) -> None:
    raw = b"".join(parts)
    original = fetch._HEADER_CHUNK
    fetch._HEADER_CHUNK = chunk
    try:
        assert fetch.read_header_block(io.BytesIO(raw)) == raw[: parse_message(raw).root.body_start]
    finally:
        fetch._HEADER_CHUNK = original


def test_header_fetch_equals_the_general_path(imap_server: ImapThread,
                                              client_tls: ssl.SSLContext) -> None:
    for raw in (NESTED, LONG_HEADER, simple_message("one"), simple_message("two"), LARGE_BODY):
        imap_server.deliver(raw)
    raw_client = login_raw(imap_server, client_tls)
    raw_client.command(b"s", b"SELECT INBOX")
    for items in (b"BODY.PEEK[HEADER]", b"BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)]",
                  b"BODY.PEEK[HEADER.FIELDS.NOT (SUBJECT)]", b"RFC822.HEADER",
                  b"BODY.PEEK[HEADER]<3.20>", b"UID RFC822.SIZE BODY.PEEK[HEADER]"):
        for first_last in (b"1:4", b"1:5"):  # all in memory; with a file among them
            fast = raw_client.command(b"a", b"FETCH " + first_last + b" (" + items + b")")
            # ENVELOPE needs the metadata, so this FETCH takes the general path.
            general = raw_client.command(
                b"b", b"FETCH " + first_last + b" (" + items + b" ENVELOPE)")
            assert fast[-1] == b"a OK FETCH completed"
            assert len(fast) == int(first_last[-1:]) + 1
            for line, other in zip(fast[:-1], general[:-1], strict=True):
                assert other.startswith(line[:-1] + b" ENVELOPE ("), items
    raw_client.close()


def test_header_fetch_without_peek_sets_seen_and_reports_it(imap_server: ImapThread,
                                                            client_tls: ssl.SSLContext) -> None:
    imap_server.deliver(simple_message("one"))
    imap_server.deliver(simple_message("two"), flags=frozenset({"\\Seen"}))
    raw_client = login_raw(imap_server, client_tls)
    raw_client.command(b"s", b"SELECT INBOX")
    lines = raw_client.command(b"f", b"FETCH 1:2 (BODY[HEADER.FIELDS (SUBJECT)])")
    assert lines == [
        b"* 1 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {16}\r\nSubject: one\r\n\r\n"
        b" FLAGS (\\Seen \\Recent))",  # a rev1 session (no ENABLE IMAP4rev2): with \Recent
        b"* 2 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {16}\r\nSubject: two\r\n\r\n)",
        b"f OK FETCH completed",
    ]
    assert all("\\Seen" in row.flags for row in imap_server.messages())
    raw_client.close()


def test_header_fetch_skips_a_message_whose_blob_is_gone(imap_server: ImapThread,
                                                         client_tls: ssl.SSLContext) -> None:
    imap_server.deliver(simple_message("one"))
    gone = imap_server.deliver(simple_message("two"))
    raw_client = login_raw(imap_server, client_tls)
    raw_client.command(b"s", b"SELECT INBOX")
    imap_server.call(imap_server.rt.blobs.delete(gone.blob_id))  # as if expunged elsewhere
    lines = raw_client.command(b"f", b"FETCH 1:2 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert lines[0].startswith(b"* 1 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {16}")
    assert lines[1:] == [b"f OK FETCH completed"]
    raw_client.close()
