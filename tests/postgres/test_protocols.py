"""SMTP, POP3 and IMAP end to end over STORAGE=postgresql (an App in a thread)."""

from __future__ import annotations

import imaplib
import poplib
import smtplib
import ssl
from collections.abc import Iterator

import pytest

from postroom.config import Config
from tests.support.server import AppThread


@pytest.fixture
def node(pg_config: Config) -> Iterator[AppThread]:
    with AppThread(pg_config) as app:
        app.add_account("alice@example.test", "pw-alice")
        app.add_account("bob@example.test", "pw-bob")
        yield app


def test_smtp_delivery_lands_in_postgresql(node: AppThread) -> None:
    with smtplib.SMTP("127.0.0.1", node.port("smtp"), timeout=10) as smtp:
        smtp.sendmail("someone@elsewhere.test", ["alice@example.test", "bob@example.test"],
                      b"Subject: both\r\n\r\nhello both\r\n")
    alice, bob = node.inbox_messages("alice@example.test"), node.inbox_messages("bob@example.test")
    assert len(alice) == 1 and len(bob) == 1
    assert alice[0] == bob[0] and alice[0].startswith(b"Return-Path: <someone@elsewhere.test>")
    assert alice[0].endswith(b"hello both\r\n")


def test_submission_then_pop3_retr_and_dele(node: AppThread, client_tls: ssl.SSLContext) -> None:
    with smtplib.SMTP("127.0.0.1", node.port("submission"), timeout=10) as smtp:
        smtp.starttls(context=client_tls)
        smtp.login("alice@example.test", "pw-alice")
        for index in range(3):
            smtp.sendmail("alice@example.test", ["bob@example.test"],
                          f"From: alice@example.test\r\nSubject: n{index}\r\n\r\n"
                          f"body {index}\r\n".encode())
    pop = poplib.POP3_SSL("127.0.0.1", node.port("pop3s"), context=client_tls, timeout=10)
    pop.user("bob@example.test")
    pop.pass_("pw-bob")
    assert pop.stat()[0] == 3
    assert b"body 1" in b"\r\n".join(pop.retr(2)[1])
    assert b"Subject: n0" in b"\r\n".join(pop.top(1, 0)[1])
    pop.dele(2)
    pop.quit()
    remaining = node.inbox_messages("bob@example.test")
    assert [b"body 0" in remaining[0], b"body 2" in remaining[1]] == [True, True]


def test_imap_fetch_and_store(node: AppThread, client_tls: ssl.SSLContext) -> None:
    with smtplib.SMTP("127.0.0.1", node.port("smtp"), timeout=10) as smtp:
        smtp.sendmail("x@elsewhere.test", ["alice@example.test"],
                      b"Subject: imap\r\n\r\nread me over IMAP\r\n")
    imap = imaplib.IMAP4_SSL("127.0.0.1", node.port("imaps"), ssl_context=client_tls,
                             timeout=10)
    imap.login("alice@example.test", "pw-alice")
    imap.select("INBOX")
    status, data = imap.uid("FETCH", "1", "(BODY.PEEK[TEXT])")
    assert status == "OK" and b"read me over IMAP" in data[0][1]  # type: ignore[index]
    assert imap.uid("STORE", "1", "+FLAGS", "(\\Seen)")[0] == "OK"
    imap.logout()
    assert node.inbox_messages("alice@example.test")
