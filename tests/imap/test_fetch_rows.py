"""The bulk FETCH path (imap/commands/fetchrows.py, issue 22) over a real socket: every
line of UID FETCH 1:* (FLAGS) and its relatives is checked against the store's rows,
across slice boundaries (SLICE made small), with \\Recent for a rev1 client on some
messages only, keywords, a contiguous run that does not start at 1, a sequence set with
gaps, items that need rows (RFC822.SIZE) or MODSEQ, and the sync lines of a session
with no \\Recent to show."""

from __future__ import annotations

import re
import ssl

import pytest

from postroom.imap.commands import fetchrows
from postroom.store.api import MessageRow
from tests.imap.conftest import ImapThread, login_raw, simple_message

FLAG_CHOICES = [frozenset(), frozenset({"\\Seen"}), frozenset({"\\Seen", "\\Flagged"}),
                frozenset({"$Label1", "\\Answered"}), frozenset({"\\Draft", "zebra", "$Junk"})]


def flags_text(row: MessageRow, recent: bool) -> str:
    names = sorted(row.flags) + (["\\Recent"] if recent else [])
    return "(" + " ".join(names) + ")"


def test_bulk_fetch_lines_match_the_store(imap_server: ImapThread,
                                          client_tls: ssl.SSLContext,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetchrows, "SLICE", 3)
    for index in range(5):
        imap_server.deliver(simple_message(f"old{index}"), flags=FLAG_CHOICES[index % 5])
    first = login_raw(imap_server, client_tls)
    first.command(b"s", b"SELECT INBOX")  # claims \Recent of these five
    for index in range(6):
        imap_server.deliver(simple_message(f"new{index}"), flags=FLAG_CHOICES[(index + 2) % 5])
    rows = imap_server.messages()
    recent = {row.uid for row in rows[5:]}
    client = login_raw(imap_server, client_tls)
    client.command(b"s", b"SELECT INBOX")

    lines = client.command(b"a", b"UID FETCH 1:* (FLAGS)")
    assert lines[:-1] == [
        f"* {seq} FETCH (UID {row.uid} FLAGS {flags_text(row, row.uid in recent)})".encode()
        for seq, row in enumerate(rows, 1)]  # fmt: skip
    assert lines[-1].startswith(b"a OK")

    # A contiguous run not starting at 1, then a set with gaps (numbered one by one).
    lines = client.command(b"b", f"UID FETCH {rows[3].uid}:{rows[8].uid} (FLAGS)".encode())
    assert lines[:-1] == [
        f"* {seq} FETCH (UID {row.uid} FLAGS {flags_text(row, row.uid in recent)})".encode()
        for seq, row in enumerate(rows, 1) if 4 <= seq <= 9]  # fmt: skip
    lines = client.command(b"c", b"FETCH 2,5:6,11 (FLAGS)")
    assert lines[:-1] == [
        f"* {seq} FETCH (FLAGS {flags_text(rows[seq - 1], rows[seq - 1].uid in recent)})".encode()
        for seq in (2, 5, 6, 11)]  # fmt: skip

    # Another session expunges the third message: after NOOP the numbers move down.
    first.command(b"d", f"UID STORE {rows[2].uid} +FLAGS.SILENT (\\Deleted)".encode())
    first.command(b"e", b"EXPUNGE")
    client.command(b"n", b"NOOP")
    rows = imap_server.messages()
    lines = client.command(b"f", b"UID FETCH 1:* (FLAGS MODSEQ RFC822.SIZE)")
    assert lines[0].startswith(b"* OK [HIGHESTMODSEQ ")  # RFC 7162 §3.1: CONDSTORE enabled
    assert lines[1:-1] == [
        (f"* {seq} FETCH (UID {row.uid} FLAGS {flags_text(row, row.uid in recent)} "
         f"MODSEQ ({row.modseq}) RFC822.SIZE {row.size})").encode()
        for seq, row in enumerate(rows, 1)]  # fmt: skip
    # A third session sees no \Recent: the sync lines (one format per message).
    third = login_raw(imap_server, client_tls)
    third.command(b"s", b"SELECT INBOX")
    lines = third.command(b"g", b"UID FETCH 1:* (FLAGS)")
    assert lines[:-1] == [f"* {seq} FETCH (UID {row.uid} FLAGS {flags_text(row, False)})"
                          .encode() for seq, row in enumerate(rows, 1)]  # fmt: skip
    lines = third.command(b"h", b"FETCH 2,5:6,10 (FLAGS)")
    assert lines[:-1] == [f"* {seq} FETCH (FLAGS {flags_text(rows[seq - 1], False)})".encode()
                          for seq in (2, 5, 6, 10)]  # fmt: skip
    for session in (third, client, first):
        session.close()


def test_bulk_fetch_of_a_big_answer_is_complete(imap_server: ImapThread,
                                                client_tls: ssl.SSLContext,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Many slices, one write each: every message answered once, in order."""
    monkeypatch.setattr(fetchrows, "SLICE", 7)
    for index in range(60):
        imap_server.deliver(simple_message(f"m{index}"), flags=FLAG_CHOICES[index % 5])
    client = login_raw(imap_server, client_tls)
    client.command(b"s", b"SELECT INBOX")
    lines = client.command(b"a", b"UID FETCH 1:* (UID FLAGS)")
    numbers = [int(re.match(rb"\* (\d+) FETCH", line).group(1))  # type: ignore[union-attr]
               for line in lines[:-1]]  # fmt: skip
    assert numbers == list(range(1, 61)) and lines[-1].startswith(b"a OK")
    client.close()
