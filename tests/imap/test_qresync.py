"""QRESYNC (RFC 7162 §3.2): SELECT ... (QRESYNC ...), VANISHED instead of EXPUNGE,
UID FETCH ... (CHANGEDSINCE m VANISHED)."""

from __future__ import annotations

import re
import ssl

import pytest

from postroom.store import api
from tests.imap.conftest import ImapThread, login_raw, simple_message


def number(pattern: bytes, text: bytes) -> int:
    match = re.search(pattern, text)
    assert match, (pattern, text)
    return int(match.group(1))


def test_qresync_resynchronises_and_reports_vanished(imap_server: ImapThread,
                                                     client_tls: ssl.SSLContext) -> None:
    for index in range(5):
        imap_server.deliver(simple_message(f"m{index}"))
    client, other = login_raw(imap_server, client_tls), login_raw(imap_server, client_tls)
    assert b"QRESYNC" in client.command(b"c", b"CAPABILITY")[0].split()
    selected = b" ".join(client.command(b"s", b"SELECT INBOX"))
    uidvalidity = number(rb"UIDVALIDITY (\d+)", selected)
    modseq = number(rb"HIGHESTMODSEQ (\d+)", selected)
    assert client.command(b"q", b"SELECT INBOX (QRESYNC (1 1))")[-1].startswith(b"q BAD")
    client.command(b"l", b"LOGOUT")
    client.close()

    # While the client is away: one message expunged, one flagged.
    other.command(b"s", b"SELECT INBOX")
    other.command(b"a", b"STORE 2 +FLAGS.SILENT (\\Deleted)")
    other.command(b"b", b"EXPUNGE")
    other.command(b"c", b"UID STORE 4 +FLAGS.SILENT (\\Flagged)")

    client = login_raw(imap_server, client_tls)
    assert client.command(b"e", b"ENABLE QRESYNC")[0] == b"* ENABLED QRESYNC CONDSTORE"
    lines = client.command(b"s", b"SELECT INBOX (QRESYNC (%d %d 1:5))" % (uidvalidity, modseq))
    assert b"* VANISHED (EARLIER) 2" in lines
    assert any(re.fullmatch(rb"\* 3 FETCH \(UID 4 FLAGS \(\\Flagged\) MODSEQ \(\d+\)\)", line)
               for line in lines), lines
    lines = client.command(b"f", b"UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % modseq)
    assert lines[0] == b"* VANISHED (EARLIER) 2"
    assert re.fullmatch(rb"\* 3 FETCH \(UID 4 FLAGS \(\\Flagged\) MODSEQ \(\d+\)\)", lines[1])

    # Expunges now arrive as VANISHED, not EXPUNGE.
    other.command(b"d", b"UID STORE 5 +FLAGS.SILENT (\\Deleted)")
    other.command(b"x", b"EXPUNGE")
    lines = client.command(b"n", b"NOOP")
    assert lines == [b"* VANISHED 5", b"n OK NOOP completed"]
    client.close()
    other.close()


def test_resync_from_before_pruned_records_names_every_uid_gone(
        imap_server: ImapThread, client_tls: ssl.SSLContext,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Past EXPUNGES_KEPT records, VANISHED (EARLIER) names every UID up to the pruned
    ones that is gone (RFC 7162 §3.2.5.2): here also UID 1, expunged before the client's
    MODSEQ, never a message still there."""
    monkeypatch.setattr(api, "EXPUNGES_KEPT", 1)
    for index in range(6):
        imap_server.deliver(simple_message(f"m{index}"))
    other = login_raw(imap_server, client_tls)
    other.command(b"s", b"SELECT INBOX")
    other.command(b"d", b"UID STORE 1 +FLAGS.SILENT (\\Deleted)")
    other.command(b"x", b"UID EXPUNGE 1")
    client = login_raw(imap_server, client_tls)
    selected = b" ".join(client.command(b"s", b"SELECT INBOX"))
    uidvalidity = number(rb"UIDVALIDITY (\d+)", selected)
    modseq = number(rb"HIGHESTMODSEQ (\d+)", selected)
    client.command(b"l", b"LOGOUT")
    client.close()
    for uid in (2, 3):  # two expunges: the records of UIDs 1 and 2 are pruned
        other.command(b"d", b"UID STORE %d +FLAGS.SILENT (\\Deleted)" % uid)
        other.command(b"x", b"UID EXPUNGE %d" % uid)
    client = login_raw(imap_server, client_tls)
    client.command(b"e", b"ENABLE QRESYNC")
    lines = client.command(b"s", b"SELECT INBOX (QRESYNC (%d %d 1:6))" % (uidvalidity, modseq))
    assert b"* VANISHED (EARLIER) 1:3" in lines
    assert b"* 3 EXISTS" in lines
    lines = client.command(b"f", b"UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % modseq)
    assert lines[0] == b"* VANISHED (EARLIER) 1:3"
    client.close()
    other.close()
