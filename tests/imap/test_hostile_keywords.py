"""Issue 25, finding 5: keywords and messages without limits, over real sockets.

A 50,000-character keyword on every message grew each session's memory by hundreds of
MB; COPY loops grew one mailbox to 64,544 messages. Now: a keyword longer than
MAX_KEYWORD_LENGTH is NO [LIMIT], so are keywords past MAX_KEYWORD_BYTES_PER_MESSAGE on
one message; the keyword past MAX_KEYWORDS_PER_MAILBOX is NO [LIMIT]
and PERMANENTFLAGS then lacks `\\*`; COPY stops at MAX_MESSAGES_PER_MAILBOX (NO [LIMIT])
and at POSTFIX_MAILBOX_SIZE_LIMIT (NO [OVERQUOTA]); APPEND likewise.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import make_config
from tests.imap.conftest import ImapThread, RawClient, login_raw, simple_message

MAX_MESSAGES = 100  # the smallest MAX_MESSAGES_PER_MAILBOX the config takes
ACCOUNT_LIMIT = 20_000


@pytest.fixture
def capped_server(tmp_path: Path, server_cert: tuple[Path, Path]) -> Iterator[ImapThread]:
    config = make_config(tmp_path, server_cert, MAX_MESSAGES_PER_MAILBOX=MAX_MESSAGES,
                         POSTFIX_MAILBOX_SIZE_LIMIT=0)
    with ImapThread(config) as server:
        yield server


@pytest.fixture
def quota_server(tmp_path: Path, server_cert: tuple[Path, Path]) -> Iterator[ImapThread]:
    config = make_config(tmp_path, server_cert, POSTFIX_MAILBOX_SIZE_LIMIT=ACCOUNT_LIMIT)
    with ImapThread(config) as server:
        yield server


def tagged(lines: list[bytes]) -> bytes:
    return lines[-1].split(b" ", 1)[1]


def select(client: RawClient, mailbox: bytes = b"INBOX") -> list[bytes]:
    lines = client.command(b"S", b"SELECT " + mailbox)
    assert tagged(lines).startswith(b"OK"), lines
    return lines


def permanent_flags(lines: list[bytes]) -> bytes:
    (line,) = [line for line in lines if b"[PERMANENTFLAGS" in line]
    return line


def append(client: RawClient, data: bytes, flags: bytes = b"") -> list[bytes]:
    client.send(b"A APPEND INBOX (" + flags + b") {%d+}\r\n" % len(data) + data + b"\r\n")
    return client.until_tagged(b"A")


def test_overlong_keyword_refused(imap_server: ImapThread, client_tls: ssl.SSLContext) -> None:
    for index in range(3):
        imap_server.deliver(simple_message(f"m{index}"))
    client = login_raw(imap_server, client_tls)
    try:
        select(client)
        huge = b"k" * 50_000
        lines = client.command(b"T", b"STORE 1:* +FLAGS.SILENT (" + huge + b")")
        assert tagged(lines).startswith(b"NO [LIMIT]"), lines[-1][:200]
        assert tagged(append(client, simple_message("x"), huge)).startswith(b"NO [LIMIT]")
        # At the limit exactly (250 bytes) is fine.
        edge = b"e" * 250
        assert tagged(client.command(b"U", b"STORE 1 +FLAGS (" + edge + b")")).startswith(b"OK")
    finally:
        client.close()
    assert all(b"k" * 251 not in " ".join(row.flags).encode()
               for row in imap_server.messages())  # fmt: skip
    assert len(imap_server.messages()) == 3


def test_keyword_bytes_per_message_capped(imap_server: ImapThread,
                                          client_tls: ssl.SSLContext) -> None:  # fmt: skip
    """Long keywords within both per-mailbox limits still cannot pile up on a message
    (200 of 250 bytes on each would be the 50 KB per message the finding was about)."""
    imap_server.deliver(simple_message("one"))
    long_ones = [(b"%03d" % n) * 83 + b"x" for n in range(9)]  # 250 bytes each
    client = login_raw(imap_server, client_tls)
    try:
        select(client)
        lines = client.command(b"T", b"STORE 1 +FLAGS (" + b" ".join(long_ones) + b")")
        assert tagged(lines).startswith(b"NO [LIMIT]"), lines[-1][:100]
        lines = client.command(b"T", b"STORE 1 +FLAGS (" + b" ".join(long_ones[:8]) + b")")
        assert tagged(lines).startswith(b"OK"), lines[-1][:100]
        lines = client.command(b"T", b"STORE 1 +FLAGS (" + long_ones[8] + b")")
        assert tagged(lines).startswith(b"NO [LIMIT]"), lines[-1][:100]
        assert tagged(append(client, simple_message("x"), b" ".join(long_ones))).startswith(
            b"NO [LIMIT]")
        # Replacing them is measured on its own: fine.
        lines = client.command(b"T", b"STORE 1 FLAGS (" + long_ones[8] + b")")
        assert tagged(lines).startswith(b"OK"), lines[-1][:100]
    finally:
        client.close()


def test_keyword_past_the_mailbox_limit(imap_server: ImapThread,
                                        client_tls: ssl.SSLContext) -> None:  # fmt: skip
    imap_server.deliver(simple_message("one"))
    imap_server.deliver(simple_message("two"))
    client = login_raw(imap_server, client_tls)
    try:
        assert b"\\*" in permanent_flags(select(client))
        first_200 = b" ".join(b"kw%d" % n for n in range(200))
        lines = client.command(b"T", b"STORE 1 +FLAGS.SILENT (" + first_200 + b")")
        assert tagged(lines).startswith(b"OK"), lines
        lines = client.command(b"T", b"STORE 2 +FLAGS.SILENT (kw200)")
        assert tagged(lines).startswith(b"NO [LIMIT]"), lines
        # Keywords already in use stay usable on other messages; removing is always fine.
        assert tagged(client.command(b"T", b"STORE 2 +FLAGS (kw7 \\Seen)")).startswith(b"OK")
        assert tagged(append(client, simple_message("3"), b"kw9")).startswith(b"OK")
        assert tagged(append(client, simple_message("4"), b"brandnew")).startswith(b"NO [LIMIT]")
        assert tagged(client.command(b"T", b"STORE 1 -FLAGS (kw0)")).startswith(b"OK")
        # Reselected at the limit (199 + kw0 again on message 2 = 200): no `\*`.
        assert tagged(client.command(b"T", b"STORE 2 +FLAGS (kw0)")).startswith(b"OK")
        assert b"\\*" not in permanent_flags(select(client))
        assert tagged(client.command(b"T", b"STORE 2 -FLAGS (kw0)")).startswith(b"OK")
        assert tagged(client.command(b"T", b"STORE 1 -FLAGS (kw1)")).startswith(b"OK")
        lines = select(client)
        assert b"\\*" in permanent_flags(lines)
        assert tagged(client.command(b"T", b"STORE 2 +FLAGS (kw200)")).startswith(b"OK")
    finally:
        client.close()


def test_copy_to_another_mailbox_counts_its_keywords(imap_server: ImapThread,
                                                     client_tls: ssl.SSLContext) -> None:
    imap_server.deliver(simple_message("a"),
                       flags=frozenset(f"src{n}" for n in range(150)))  # fmt: skip
    imap_server.deliver(simple_message("b"), mailbox="Drafts",
                       flags=frozenset(f"dst{n}" for n in range(150)))  # fmt: skip
    client = login_raw(imap_server, client_tls)
    try:
        select(client)
        lines = client.command(b"C", b"COPY 1 Drafts")
        assert tagged(lines).startswith(b"NO [LIMIT]"), lines
        assert tagged(client.command(b"C", b"MOVE 1 Drafts")).startswith(b"NO [LIMIT]")
        assert tagged(client.command(b"C", b"COPY 1 INBOX")).startswith(b"OK")
    finally:
        client.close()
    assert len(imap_server.messages("Drafts")) == 1


def test_copy_loop_stops_at_the_message_cap(capped_server: ImapThread,
                                            client_tls: ssl.SSLContext) -> None:  # fmt: skip
    for index in range(10):
        capped_server.deliver(simple_message(f"m{index}"))
    client = login_raw(capped_server, client_tls)
    answers = []
    try:
        select(client)
        for _ in range(12):  # unbounded, 10 doublings would make 10,240 messages
            answers.append(tagged(client.command(b"C", b"COPY 1:* INBOX")))
            client.command(b"N", b"NOOP")
            if answers[-1].startswith(b"NO"):
                break
        assert answers[-1].startswith(b"NO [LIMIT]"), answers
        assert len(capped_server.messages()) == 80  # 10, 20, 40, 80; 160 is refused
        assert tagged(client.command(b"C", b"COPY 1:20 INBOX")).startswith(b"OK")
        assert tagged(append(client, simple_message("101st"))).startswith(b"NO [LIMIT]")
        assert tagged(client.command(b"C", b"MOVE 1 Drafts")).startswith(b"OK")
        assert tagged(append(client, simple_message("fits again"))).startswith(b"OK")
    finally:
        client.close()
    assert len(capped_server.messages()) == MAX_MESSAGES


def test_copy_loop_stops_at_the_account_size(quota_server: ImapThread,
                                             client_tls: ssl.SSLContext) -> None:  # fmt: skip
    body = "x" * 900 + "\r\n"
    size = len(simple_message("q", body))
    quota_server.deliver(simple_message("q", body))
    client = login_raw(quota_server, client_tls)
    answers = []
    try:
        select(client)
        for _ in range(12):
            answers.append(tagged(client.command(b"C", b"COPY 1:* INBOX")))
            client.command(b"N", b"NOOP")
            if answers[-1].startswith(b"NO"):
                break
        assert answers[-1].startswith(b"NO [OVERQUOTA]"), answers
        count = len(quota_server.messages())
        assert count * size <= ACCOUNT_LIMIT < 2 * count * size
        # Copying into another mailbox is refused as well; moving adds no bytes.
        assert tagged(client.command(b"C", b"COPY 1:* Drafts")).startswith(b"NO [OVERQUOTA]")
        assert tagged(client.command(b"C", b"MOVE 1 Drafts")).startswith(b"OK")
        while count * size + size <= ACCOUNT_LIMIT:
            assert tagged(append(client, simple_message("q", body))).startswith(b"OK")
            count += 1
        assert tagged(append(client, simple_message("q", body))).startswith(b"NO [OVERQUOTA]")
    finally:
        client.close()
