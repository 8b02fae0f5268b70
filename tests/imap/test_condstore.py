"""CONDSTORE (RFC 7162 §3.1): HIGHESTMODSEQ, MODSEQ in FETCH, CHANGEDSINCE, UNCHANGEDSINCE,
SEARCH MODSEQ, STATUS HIGHESTMODSEQ."""

from __future__ import annotations

import re
import ssl

from tests.imap.conftest import ImapThread, login_raw, simple_message


def number(pattern: bytes, lines: list[bytes]) -> int:
    for line in lines:
        match = re.search(pattern, line)
        if match:
            return int(match.group(1))
    raise AssertionError((pattern, lines))


def test_condstore_flow(imap_server: ImapThread, client_tls: ssl.SSLContext) -> None:
    for index in range(3):
        imap_server.deliver(simple_message(f"m{index}"))
    client, other = login_raw(imap_server, client_tls), login_raw(imap_server, client_tls)
    assert b"CONDSTORE" in client.command(b"c", b"CAPABILITY")[0].split()
    assert client.command(b"e", b"ENABLE CONDSTORE")[0] == b"* ENABLED CONDSTORE"
    lines = client.command(b"s", b"SELECT INBOX (CONDSTORE)")
    highest = number(rb"\[HIGHESTMODSEQ (\d+)\]", lines)
    status = other.command(b"t", b"STATUS INBOX (HIGHESTMODSEQ)")[0]
    assert status == b'* STATUS "INBOX" (HIGHESTMODSEQ %d)' % highest

    lines = client.command(b"a", b"STORE 2 +FLAGS (\\Seen)")
    changed = number(rb"MODSEQ \((\d+)\)", lines)
    assert changed > highest and lines[0].startswith(b"* 2 FETCH (FLAGS (")
    lines = client.command(b"f", b"FETCH 1:* (UID FLAGS) (CHANGEDSINCE %d)" % highest)
    assert lines == [b"* 2 FETCH (UID 2 FLAGS (\\Seen \\Recent) MODSEQ (%d))" % changed,
                     b"f OK FETCH completed"]
    lines = client.command(b"q", b"SEARCH MODSEQ %d" % changed)
    assert lines[0] == b"* SEARCH 2 (MODSEQ %d)" % changed

    # Another session changes message 3; our UNCHANGEDSINCE store must not clobber it.
    other.command(b"s", b"SELECT INBOX")
    other.command(b"x", b"STORE 3 +FLAGS.SILENT (\\Flagged)")
    lines = client.command(b"u", b"STORE 1,3 (UNCHANGEDSINCE %d) +FLAGS (\\Answered)" % highest)
    assert lines[-1].startswith(b"u OK [MODIFIED 3]")
    assert any(line.startswith(b"* 1 FETCH (FLAGS (\\Answered \\Recent) MODSEQ (")
               for line in lines)
    # The other session's flag change arrives with its MODSEQ (CONDSTORE is on).
    assert any(re.match(rb"\* 3 FETCH \(UID 3 FLAGS \(\\Flagged \\Recent\) MODSEQ \(\d+\)\)",
                        line) for line in lines)
    client.close()
    other.close()
