"""Sieve at delivery over real sockets (issue 19): scripts filing, rejecting at end of
DATA, discarding, editing, vacation replies and redirects through the outbound queue
(to an SMTP sink standing in for the Internet: DEFAULT_RELAY_HOST), SRS bounces back,
and a failing script that keeps the message and tells the user once."""

from __future__ import annotations

import datetime as dt
import smtplib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from postroom.mailauth import keys
from postroom.outbound.signing import keys_dir
from tests.conftest import make_config
from tests.support.server import NO_DNS_CHECKS, AppThread
from tests.support.smtpsink import Sink

USER = "user@example.com"




@pytest.fixture
def server(tmp_path: Path, server_cert: tuple[Path, Path],
           sink: tuple[Sink, int]) -> Iterator[AppThread]:
    config = make_config(tmp_path, server_cert, **NO_DNS_CHECKS, ENABLE_DNSBL=0,
                         DEFAULT_RELAY_HOST=f"[127.0.0.1]:{sink[1]}", SIEVE_MAX_ACTIONS=8)
    keys.generate_key(keys_dir(config), "example.com", bits=1024)
    with AppThread(config) as app:
        app.add_account(USER, "pw")
        yield app


def put_scripts(app: AppThread, user: str | None = None, *, before: str | None = None,
                after: str | None = None) -> None:
    async def run() -> None:
        store, now = app.runtime.store, dt.datetime.now(dt.UTC)
        if user is not None:
            account = await store.get_account(USER)
            assert account is not None
            await store.put_sieve_script(account.id, "main", user, now)
            await store.activate_sieve_script(account.id, "main")
        for name, text in (("before", before), ("after", after)):
            if text is not None:
                await store.put_global_sieve_script(name, text, now)

    app.call(run())


def send(app: AppThread, raw: bytes, sender: str = "joe@example.org",
         recipients: tuple[str, ...] = (USER,)) -> None:
    with smtplib.SMTP("127.0.0.1", app.port("smtp"), timeout=30) as client:
        client.sendmail(sender, list(recipients), raw)


def message(subject: str, sender: str = "joe@example.org", extra: str = "",
            message_id: str = "") -> bytes:
    mid = message_id or f"<{time.monotonic_ns()}@example.org>"
    return (f"From: {sender}\r\nTo: {USER}\r\nSubject: {subject}\r\nMessage-ID: {mid}\r\n"
            f"{extra}\r\nbody of {subject}\r\n").encode()


def wait_for(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def subjects(app: AppThread, mailbox: str = "INBOX") -> list[str]:
    found = []
    for raw in app.inbox_messages(USER, mailbox):
        for line in raw.split(b"\r\n"):
            if line.startswith(b"Subject: "):
                found.append(line[9:].decode())
    return found


def test_fileinto_create_and_missing_folder_fallback(server: AppThread) -> None:
    put_scripts(server, 'require ["fileinto", "mailbox"];\n'
                'if header :contains "subject" "lists" { fileinto :create "Lists"; }\n'
                'elsif header :contains "subject" "nowhere" { fileinto "Nowhere"; }\n')
    send(server, message("about lists"))
    send(server, message("to nowhere"))
    assert subjects(server, "Lists") == ["about lists"]
    assert subjects(server) == ["to nowhere"]  # no :create: INBOX, no new folder


def test_before_user_after_in_order_and_stop_ends_all(server: AppThread) -> None:
    put_scripts(server, 'require "fileinto"; fileinto "Work";',
                before='require ["imap4flags", "fileinto"]; addflag "\\\\Flagged";\n'
                       'if header :contains "subject" "urgent" { fileinto "Urgent"; stop; }',
                after='require ["fileinto", "copy"]; fileinto :copy "Archive";')
    server.call(_create(server, "Work", "Archive", "Urgent"))
    send(server, message("ordinary"))
    send(server, message("urgent one"))
    assert subjects(server, "Work") == ["ordinary"]
    assert subjects(server, "Archive") == ["ordinary"]
    assert subjects(server, "Urgent") == ["urgent one"]
    assert subjects(server) == []
    assert "\\Flagged" in server.call(_flags(server, "Work"))


async def _flags(app: AppThread, name: str) -> frozenset[str]:
    store = app.runtime.store
    account = await store.get_account(USER)
    assert account is not None
    box = await store.get_mailbox(account.id, name)
    assert box is not None
    return (await store.list_messages(box.id))[0].flags


async def _create(app: AppThread, *names: str) -> None:
    store = app.runtime.store
    account = await store.get_account(USER)
    assert account is not None
    for name in names:
        await store.create_mailbox(account.id, name)


def test_reject_refuses_at_end_of_data(server: AppThread) -> None:
    put_scripts(server, 'require "reject"; if header :contains "subject" "offer" '
                        '{ reject "No offers, thank you."; }')
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(server, message("special offer"))
    assert refused.value.smtp_code == 550 and b"No offers, thank you." in refused.value.smtp_error
    send(server, message("hello"))
    assert subjects(server) == ["hello"]


def test_discard_and_editheader(server: AppThread) -> None:
    put_scripts(server, 'require "editheader";\n'
                        'if header :contains "subject" "noise" { discard; stop; }\n'
                        'addheader "X-Sieved" "yes"; deleteheader "X-Secret";')
    send(server, message("noise"))
    send(server, message("signal", extra="X-Secret: 42\r\n"))
    stored = server.inbox_messages(USER)
    assert len(stored) == 1
    assert b"X-Sieved: yes\r\n" in stored[0] and b"X-Secret" not in stored[0]
    assert b"Subject: signal" in stored[0]


def test_vacation_once_per_sender_never_to_lists(server: AppThread,
                                                 sink: tuple[Sink, int]) -> None:
    replies = sink[0].received
    put_scripts(server, 'require "vacation"; vacation :days 1 :subject "Away" '
                        '"Back on Monday.";')
    send(server, message("first"))
    wait_for(lambda: len(replies) == 1)
    mail_from, rcpt, raw = replies[0]
    assert mail_from in ("", "<>") and rcpt == ["joe@example.org"]  # the null sender
    assert b"Auto-Submitted: auto-replied" in raw and b"Subject: Away" in raw
    assert raw.startswith(b"DKIM-Signature:") and b"d=example.com" in raw
    send(server, message("second"))  # same sender within the period: no reply
    send(server, message("list mail", sender="news@example.org",
                         extra="List-Id: <news.example.org>\r\n"), sender="news@example.org")
    send(server, message("auto", sender="robot@example.org",
                         extra="Auto-Submitted: auto-replied\r\n"), sender="robot@example.org")
    send(server, message("from ann", sender="ann@example.org"),
         sender="ann@example.org")  # replied to: a marker that the others were not
    wait_for(lambda: len(replies) == 2)
    assert replies[1][1] == ["ann@example.org"]
    assert len(subjects(server)) == 5  # vacation keeps every message


def test_redirect_goes_out_with_srs_and_dkim_and_bounces_come_back(
        server: AppThread, sink: tuple[Sink, int]) -> None:
    received = sink[0].received
    put_scripts(server, 'redirect "desk@example.net";')
    send(server, message("forward me"))
    wait_for(lambda: len(received) == 1)
    mail_from, rcpt, raw = received[0]
    assert rcpt == ["desk@example.net"]
    assert mail_from.startswith("SRS0=") and mail_from.endswith(
        "=example.org=joe@mail.example.test")
    assert raw.startswith(b"DKIM-Signature:") and b"d=example.com" in raw
    assert b"Subject: forward me" in raw
    assert subjects(server) == []  # redirect cancels the implicit keep
    bounce = b"From: MAILER-DAEMON@example.net\r\nSubject: undeliverable\r\n\r\nsorry\r\n"
    send(server, bounce, sender="", recipients=(mail_from,))  # the SRS0 address takes it
    wait_for(lambda: len(received) == 2)
    assert received[1][1] == ["joe@example.org"]
    forged = mail_from.replace("=joe@", "=eve@")
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send(server, bounce, sender="", recipients=(forged,))


def test_a_failing_script_keeps_the_message_and_tells_the_user_once(
        server: AppThread) -> None:
    put_scripts(server, 'require "fileinto";'
                + "".join(f'fileinto "f{n}";' for n in range(12)))  # over SIEVE_MAX_ACTIONS
    send(server, message("one"))
    send(server, message("two"))
    inbox = subjects(server)
    assert "one" in inbox and "two" in inbox
    assert inbox.count("Your Sieve filter failed") == 1


def test_duplicate_drops_the_second_copy(server: AppThread) -> None:
    put_scripts(server, 'require "duplicate"; if duplicate { discard; }')
    send(server, message("copy", message_id="<same@example.org>"))
    send(server, message("copy", message_id="<same@example.org>"))
    assert subjects(server) == ["copy"]
