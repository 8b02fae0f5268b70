"""Spam verdicts the docker-mailserver way, end to end over SMTP and IMAP (issue 18):
GTUBE refused at SA_KILL, filed into Junk between SA_TAG2 and SA_KILL (subject marked,
X-Spam-* fields, MARK_SPAM_AS_READ), SPAM_TO_INBOX, and per-account thresholds."""

from __future__ import annotations

import email
import imaplib
import logging
import smtplib
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from postroom.checks.gtube import GTUBE
from postroom.store.api import SpamThresholds
from tests.conftest import make_config
from tests.support.server import NO_DNS_CHECKS, AppThread

USER, OTHER = "user@example.test", "other@example.test"
PASSWORD = "correct horse battery"
SPAM = (b"From: a@remote.example\r\nTo: user@example.test\r\nSubject: Cheap pills\r\n"
        b"X-Spam-Flag: NO\r\nX-Spam-Status: No, score=-100\r\n\r\n" + GTUBE + b"\r\n")
HAM = b"From: a@remote.example\r\nTo: user@example.test\r\nSubject: Lunch\r\n\r\nNoon?\r\n"


def start(tmp_path: Path, cert: tuple[Path, Path], **overrides: Any) -> AppThread:
    config = make_config(tmp_path, cert, **NO_DNS_CHECKS, ENABLE_DNSBL=0, ENABLE_POP3=0,
                         **overrides)
    server = AppThread(config).__enter__()
    server.add_account(USER, PASSWORD)
    server.add_account(OTHER, PASSWORD)
    return server


@pytest.fixture
def kill_app(tmp_path: Path, server_cert: tuple[Path, Path]) -> Iterator[AppThread]:
    server = start(tmp_path, server_cert)  # the defaults: SA_KILL 10, SPAM_TO_INBOX=0
    yield server
    server.stop()


@pytest.fixture
def junk_app(tmp_path: Path, server_cert: tuple[Path, Path]) -> Iterator[AppThread]:
    server = start(tmp_path, server_cert, SA_KILL=2000, MARK_SPAM_AS_READ=1)
    yield server
    server.stop()


def send(server: AppThread, recipients: list[str], message: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=20) as client:
        client.sendmail("a@remote.example", recipients, message)


def fetch(server: AppThread, client_tls: ssl.SSLContext, address: str,
          mailbox: str) -> list[tuple[bytes, bytes]]:
    """(flags, message) of every message in the mailbox, over IMAP."""
    with imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"), ssl_context=client_tls,
                           timeout=20) as imap:
        imap.login(address, PASSWORD)
        imap.select(f'"{mailbox}"', readonly=True)
        _, data = imap.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[])")
        return [(item[0], item[1]) for item in data if isinstance(item, tuple)]


def test_gtube_is_refused_at_sa_kill(kill_app: AppThread, caplog: pytest.LogCaptureFixture
                                     ) -> None:
    caplog.set_level(logging.INFO, "postroom")
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(kill_app, [USER], SPAM)
    assert (refused.value.smtp_code, refused.value.smtp_error) == (
        554, b"5.7.1 Message rejected as spam")
    send(kill_app, [USER], HAM)  # the connection's next message goes through
    assert kill_app.inbox_messages(USER, "Junk") == []
    (stored,) = kill_app.inbox_messages(USER)
    assert b"Subject: Lunch" in stored and b"X-Spam" not in stored
    lines = [r.getMessage() for r in caplog.records if "result=554" in r.getMessage()]
    assert len(lines) == 1 and "spam=reject score=1000 tests=GTUBE=1000" in lines[0]


def test_gtube_between_tag2_and_kill_goes_to_junk(junk_app: AppThread,
                                                  client_tls: ssl.SSLContext) -> None:
    send(junk_app, [USER], SPAM)
    ((flags, stored),) = fetch(junk_app, client_tls, USER, "Junk")
    assert fetch(junk_app, client_tls, USER, "INBOX") == []
    assert b"\\Seen" in flags  # MARK_SPAM_AS_READ
    parsed = email.message_from_bytes(stored)
    assert parsed["Subject"] == "***SPAM*** Cheap pills"
    assert parsed.get_all("X-Spam-Flag") == ["YES"]  # the client's own "NO" is cut
    assert parsed.get_all("X-Spam-Score") == ["1000"]
    (status,) = parsed.get_all("X-Spam-Status")
    assert status.startswith("Yes, score=1000 required=6.31 tests=GTUBE=1000")
    assert stored.index(b"X-Spam-Flag") < stored.index(b"Received:")
    assert stored.count(b"Subject:") == 1


def test_ham_is_untouched(junk_app: AppThread, client_tls: ssl.SSLContext) -> None:
    send(junk_app, [USER], HAM)
    ((flags, stored),) = fetch(junk_app, client_tls, USER, "INBOX")
    assert b"\\Seen" not in flags and b"X-Spam" not in stored
    assert stored.endswith(HAM)


def test_spam_to_inbox_delivers_what_sa_kill_would_refuse(
        tmp_path: Path, server_cert: tuple[Path, Path], client_tls: ssl.SSLContext) -> None:
    server = start(tmp_path, server_cert, SPAM_TO_INBOX=1, MOVE_SPAM_TO_JUNK=0,
                   SPAM_SUBJECT="[spam] ")
    try:
        send(server, [USER], SPAM)
        ((flags, stored),) = fetch(server, client_tls, USER, "INBOX")
        assert b"\\Seen" not in flags
        assert b"\r\nSubject: [spam] Cheap pills\r\n" in stored
    finally:
        server.stop()


def set_thresholds(server: AppThread, address: str, thresholds: SpamThresholds) -> None:
    async def store_them() -> None:
        account = await server.runtime.store.get_account(address)
        assert account is not None
        await server.runtime.store.set_spam_thresholds(account.id, thresholds)

    server.call(store_them())


def test_per_account_thresholds(kill_app: AppThread, client_tls: ssl.SSLContext) -> None:
    set_thresholds(kill_app, OTHER, SpamThresholds(tag2=5000.0, kill=6000.0))
    with pytest.raises(smtplib.SMTPDataError):
        send(kill_app, [USER], SPAM)  # the global SA_KILL
    send(kill_app, [OTHER], SPAM)  # its own SA_TAG2 is above 1000: tagged, INBOX
    ((_, stored),) = fetch(kill_app, client_tls, OTHER, "INBOX")
    assert b"X-Spam-Status: No, score=1000 required=5000 tests=GTUBE=1000\r\n" in stored
    assert b"Subject: Cheap pills" in stored
    # Both at once: one DATA reply for both, so no refusal; USER's copy goes to Junk,
    # marked, OTHER's to its INBOX, each with its own verdict.
    send(kill_app, [USER, OTHER], SPAM)
    ((_, junk),) = fetch(kill_app, client_tls, USER, "Junk")
    assert b"Subject: ***SPAM*** Cheap pills" in junk and b"X-Spam-Flag: YES" in junk
    assert len(fetch(kill_app, client_tls, OTHER, "INBOX")) == 2
    assert fetch(kill_app, client_tls, OTHER, "Junk") == []


def test_a_large_spooled_message_is_marked_too(junk_app: AppThread) -> None:
    """Past 1 MiB the body is streamed from the spool file: the cut ranges and the new
    Subject apply there as well."""
    filler = b"".join(b"line %06d of a long newsletter\r\n" % n for n in range(60_000))
    send(junk_app, [USER], SPAM + filler)
    (stored,) = junk_app.inbox_messages(USER, "Junk")
    header, _, body = stored.partition(b"\r\n\r\n")
    assert b"\r\nSubject: ***SPAM*** Cheap pills\r\n" in header
    assert header.count(b"X-Spam-Flag") == 1 and b"X-Spam-Flag: NO" not in header
    assert body.startswith(GTUBE) and body.endswith(filler)
