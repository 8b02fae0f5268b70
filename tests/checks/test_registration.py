"""One line of registration: a check added to app.py's `inbound_checks` runs on every SMTP
listener of a whole App, after the built-in ones."""

from __future__ import annotations

import smtplib
from dataclasses import dataclass
from pathlib import Path

import pytest

from postroom import app as app_module
from postroom.checks import Check, CheckReply, Verdict, refuse
from postroom.checks.clamav import VirusCheck
from postroom.checks.dmarc import DmarcCheck
from postroom.checks.dnsbl import DnsblCheck
from postroom.checks.greylist import GreylistCheck
from postroom.checks.gtube import GtubeCheck
from postroom.checks.headers import HeaderLimitCheck
from postroom.checks.spf import SpfCheck
from postroom.checks.spoofing import SpoofingCheck
from postroom.delivery.transit import ReceivedMessage
from postroom.runtime import Runtime
from tests.conftest import make_config
from tests.support.server import NO_DNS_CHECKS, AppThread

USER = "user@example.test"
MESSAGE = b"From: a@remote.example\r\nTo: user@example.test\r\nSubject: %s\r\n\r\nHi.\r\n"


@dataclass(frozen=True, slots=True)
class SubjectCheck:
    """The whole of a new check: refuse one subject, stamp the rest."""

    name: str = "subject"
    timeout: float | None = 1.0
    fail_open: bool = True

    async def on_message(self, message: ReceivedMessage) -> Verdict:
        with message.open_body() as body:
            if b"Subject: forbidden" in body.read():
                return refuse(CheckReply(550, "5.7.1", "Forbidden subject"))
        return Verdict(headers=(b"X-Subject-Check: passed\r\n",))


async def test_the_built_in_list_in_order(runtime: Runtime) -> None:
    kinds = [type(check) for check in app_module.inbound_checks(runtime)]
    assert kinds == [HeaderLimitCheck, SpoofingCheck, SpfCheck, GreylistCheck, DmarcCheck,
                     VirusCheck, GtubeCheck, DnsblCheck]


def test_a_registered_check_runs_in_the_app(tmp_path: Path, server_cert: tuple[Path, Path],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    built_in = app_module.inbound_checks

    def registered(runtime: Runtime) -> tuple[Check, ...]:
        return (*built_in(runtime), SubjectCheck())  # the one line a new check adds

    monkeypatch.setattr(app_module, "inbound_checks", registered)
    with AppThread(make_config(tmp_path, server_cert, **NO_DNS_CHECKS)) as server:
        server.add_account(USER, "correct horse battery")
        with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=20) as client:
            client.sendmail("a@remote.example", [USER], MESSAGE % b"fine")
            with pytest.raises(smtplib.SMTPDataError) as refused:
                client.sendmail("a@remote.example", [USER], MESSAGE % b"forbidden")
        assert (refused.value.smtp_code, refused.value.smtp_error) == (
            550, b"5.7.1 Forbidden subject")
        (stored,) = server.inbox_messages(USER)
    assert b"X-Subject-Check: passed\r\n" in stored
    assert b"Authentication-Results: " in stored.split(b"X-Subject-Check")[0]  # DMARC's, first
