"""Quotas where mail enters over SMTP (issue 17), with smtplib and swaks against a whole
App: RCPT 452 4.2.2 for an account whose quota is used up, 552 5.2.2 for a message (or a
declared SIZE) the quota has no room for, ENABLE_QUOTAS=0, and the warnings at 80 % and
95 %, sent once per crossing."""

from __future__ import annotations

import shutil
import smtplib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import make_config
from tests.quota.conftest import fill, raw_message
from tests.support.server import NO_DNS_CHECKS, AppThread

USER, OTHER, PASSWORD = "user@example.test", "other@example.test", "pw-quota-1"
SENDER = "someone@remote.example"
QUOTA = 100_000


def start(tmp_path: Path, server_cert: tuple[Path, Path], **overrides: object) -> AppThread:
    app = AppThread(make_config(tmp_path, server_cert, **NO_DNS_CHECKS, **overrides))
    app.__enter__()
    app.add_account(USER, PASSWORD)
    app.add_account(OTHER, PASSWORD)
    app.call(app.runtime.store.set_quota(USER, QUOTA, None))
    return app


@pytest.fixture
def app(tmp_path: Path, server_cert: tuple[Path, Path]) -> Iterator[AppThread]:
    served = start(tmp_path, server_cert)
    try:
        yield served
    finally:
        served.stop()


def usage(app: AppThread, address: str = USER) -> tuple[int, int, int]:
    """(messages, bytes, warning level) of the account."""

    async def read() -> tuple[int, int, int]:
        account = await app.runtime.store.get_account(address)
        assert account is not None
        held = await app.runtime.store.account_quota(account.id)
        return held.messages, held.size, held.setting.warned

    return app.call(read())


def warnings(app: AppThread) -> list[bytes]:
    return [raw for raw in app.inbox_messages(USER) if b"Subject: Mailbox quota warning" in raw]


def test_full_account_is_452_at_rcpt_others_still_served(app: AppThread) -> None:
    app.call(fill(app.runtime, USER, QUOTA))
    with smtplib.SMTP("127.0.0.1", app.port("smtp"), timeout=10) as smtp:
        smtp.ehlo("client.example")
        smtp.mail(SENDER)
        code, text = smtp.rcpt(USER)
        assert (code, text[:6]) == (452, b"4.2.2 ") and b"Mailbox full" in text
        assert smtp.rcpt(OTHER)[0] == 250
        assert smtp.data(raw_message(500, "for other"))[0] == 250
    assert usage(app)[:2] == (1, QUOTA)
    assert usage(app, OTHER)[0] == 1


def test_message_that_does_not_fit_is_552_after_data(app: AppThread) -> None:
    app.call(fill(app.runtime, USER, QUOTA - 5_000))
    with smtplib.SMTP("127.0.0.1", app.port("smtp"), timeout=10) as smtp:
        smtp.ehlo("client.example")
        smtp.mail(SENDER)  # no SIZE= (smtplib's sendmail would declare it)
        assert smtp.rcpt(USER)[0] == 250  # not full yet
        code, text = smtp.data(raw_message(10_000, "too big"))
        assert (code, text) == (552, b"5.2.2 Quota exceeded (mailbox for user is full)")
        smtp.sendmail(SENDER, [USER], raw_message(1_000, "fits"))  # permanent for that one only
    held, size, level = usage(app)
    assert held == 3 and QUOTA - 4_000 < size <= QUOTA  # filler, "fits", the 95 % warning
    assert level == 95 and len(warnings(app)) == 1


def test_declared_size_that_does_not_fit_is_552_at_rcpt(app: AppThread) -> None:
    app.call(fill(app.runtime, USER, QUOTA - 5_000))
    with smtplib.SMTP("127.0.0.1", app.port("smtp"), timeout=10) as smtp:
        smtp.ehlo("client.example")
        smtp.mail(SENDER, ["SIZE=10000"])
        code, text = smtp.rcpt(USER)
        assert (code, text[:6]) == (552, b"5.2.2 ")
        smtp.rset()
        smtp.mail(SENDER, ["SIZE=1000"])
        assert smtp.rcpt(USER)[0] == 250


def test_message_count_quota(app: AppThread) -> None:
    app.call(app.runtime.store.set_quota(USER, 0, 2))
    app.call(fill(app.runtime, USER, 200, count=2))
    with smtplib.SMTP("127.0.0.1", app.port("smtp"), timeout=10) as smtp:
        smtp.ehlo("client.example")
        smtp.mail(SENDER)
        assert smtp.rcpt(USER)[0] == 452


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed")
def test_swaks_sees_552_5_2_2(app: AppThread) -> None:
    app.call(fill(app.runtime, USER, QUOTA - 1_000))
    result = subprocess.run(
        ["swaks", "--server", "127.0.0.1", "--port", str(app.port("smtp")), "--from", SENDER,
         "--to", USER, "--body", "x" * 3_000, "--timeout", "10"],
        capture_output=True, text=True, timeout=30)  # fmt: skip
    assert "<** 552 5.2.2 Quota exceeded" in result.stdout, result.stdout


def test_enable_quotas_off_leaves_only_the_cap(tmp_path: Path,
                                               server_cert: tuple[Path, Path]) -> None:
    app = start(tmp_path, server_cert, ENABLE_QUOTAS=0, POSTFIX_MAILBOX_SIZE_LIMIT=QUOTA * 2)
    try:
        app.call(fill(app.runtime, USER, QUOTA))
        with smtplib.SMTP("127.0.0.1", app.port("smtp"), timeout=10) as smtp:
            smtp.sendmail(SENDER, [USER], raw_message(5_000, "past the quota"))
            app.call(fill(app.runtime, USER, 70_000))
            smtp.sendmail(SENDER, [USER], raw_message(1_000, "at 88 % of the cap"))
            app.call(fill(app.runtime, USER, 30_000))  # now past the cap
            smtp.ehlo("client.example")
            smtp.mail(SENDER)
            assert smtp.rcpt(USER)[0] == 452  # issue 25's cap still holds
        assert warnings(app) == []  # no quota, no warning
    finally:
        app.stop()


def test_warnings_at_80_and_95_once_per_crossing(app: AppThread) -> None:
    app.call(fill(app.runtime, USER, 78_000))
    with smtplib.SMTP("127.0.0.1", app.port("smtp"), timeout=10) as smtp:
        smtp.sendmail(SENDER, [USER], raw_message(3_000, "crosses 80"))
        assert len(warnings(app)) == 1 and usage(app)[2] == 80
        smtp.sendmail(SENDER, [USER], raw_message(1_000, "still over 80"))
        assert len(warnings(app)) == 1  # once per crossing
        smtp.sendmail(SENDER, [USER], raw_message(12_000, "crosses 95"))
        found = warnings(app)
        assert len(found) == 2 and b"Subject: Mailbox quota warning: 95% used" in found[1]
        assert b"From: Mail Delivery System <postmaster@example.test>" in found[1]

        async def drop_fillers() -> None:  # the user makes room
            store = app.runtime.store
            account = await store.get_account(USER)
            assert account is not None
            inbox = await store.get_mailbox(account.id, "INBOX")
            assert inbox is not None
            blobs = app.runtime.blobs
            rows = await store.list_messages(inbox.id)
            await store.expunge(inbox.id, [row.uid for row in rows
                                           if b"filler" in await blobs.read(row.blob_id)])

        app.call(drop_fillers())
        smtp.sendmail(SENDER, [USER], raw_message(1_000, "below again"))
        assert usage(app)[2] == 0 and len(warnings(app)) == 2  # reset, silently
        app.call(fill(app.runtime, USER, 70_000))
        smtp.sendmail(SENDER, [USER], raw_message(1_000, "crosses 80 again"))
        assert len(warnings(app)) == 3 and usage(app)[2] == 80
