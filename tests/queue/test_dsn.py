"""RFC 3464 DSNs, parsed back with the standard library's email package."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from email.message import EmailMessage, Message

from postroom.mail.dsn import DsnAction, DsnRecipient, DsnReport, render_dsn

ORIGINAL = (b"Return-Path: <alice@example.test>\r\n"
            b"From: Alice <alice@example.test>\r\n"
            b"To: bob@remote.test\r\n"
            b"Subject: lunch?\r\n"
            b"Message-ID: <m1@example.test>\r\n"
            b"\r\n"
            b"The body must not appear in the report.\r\n")
WHEN = dt.datetime(2026, 3, 1, 10, 0, tzinfo=dt.UTC)


def make_report(*recipients: DsnRecipient, envid: str = "") -> DsnReport:
    return DsnReport(reporting_mta="mail.example.test", original_sender="alice@example.test",
                     original_message=ORIGINAL, arrival_date=WHEN - dt.timedelta(hours=1),
                     recipients=recipients, envid=envid)


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


BOUNCE = DsnRecipient("bob@remote.test", DsnAction.FAILED, "5.1.1",
                      "550 5.1.1 <bob@remote.test>: no such user", remote_mta="mx.remote.test",
                      last_attempt=WHEN)


def test_failed_dsn_structure_and_fields() -> None:
    raw = render_dsn(make_report(BOUNCE, envid="ENV42"), date=WHEN,
                     message_id="dsn1@mail.example.test")
    message = parse(raw)
    assert message.get_content_type() == "multipart/report"
    assert message.get_param("report-type") == "delivery-status"
    assert message["From"].addresses[0].addr_spec == "MAILER-DAEMON@mail.example.test"
    assert message["To"].addresses[0].addr_spec == "alice@example.test"
    assert message["Subject"] == "Undelivered Mail Returned to Sender"
    assert message["Auto-Submitted"] == "auto-replied"
    assert message["Message-ID"] == "<dsn1@mail.example.test>"
    assert message["In-Reply-To"] == "<m1@example.test>"
    human, status, headers = message.get_payload()
    assert isinstance(human, EmailMessage) and isinstance(status, EmailMessage)
    assert human.get_content_type() == "text/plain"
    assert "bob@remote.test" in human.get_content()
    assert "550 5.1.1" in human.get_content()

    assert status.get_content_type() == "message/delivery-status"
    blocks = status.get_payload()
    assert isinstance(blocks, list) and len(blocks) == 2
    per_message, per_recipient = blocks
    assert isinstance(per_message, Message) and isinstance(per_recipient, Message)
    assert per_message["Reporting-MTA"] == "dns; mail.example.test"
    assert per_message["Original-Envelope-Id"] == "ENV42"
    assert email.utils.parsedate_to_datetime(
        per_message["Arrival-Date"]) == WHEN - dt.timedelta(hours=1)
    assert per_recipient["Final-Recipient"] == "rfc822; bob@remote.test"
    assert per_recipient["Action"] == "failed"
    assert per_recipient["Status"] == "5.1.1"
    assert per_recipient["Remote-MTA"] == "dns; mx.remote.test"
    assert per_recipient["Diagnostic-Code"] == "smtp; 550 5.1.1 <bob@remote.test>: no such user"
    assert per_recipient["Last-Attempt-Date"]

    assert headers.get_content_type() == "text/rfc822-headers"
    copied = headers.get_payload(decode=True)
    assert b"Subject: lunch?" in copied
    assert b"must not appear" not in raw


def test_lines_are_crlf_and_short() -> None:
    long = DsnRecipient("bob@remote.test", DsnAction.FAILED, "5.0.0", "x " * 2000,
                        is_smtp_diagnostic=False)
    raw = render_dsn(make_report(long), date=WHEN, message_id="d@h")
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) < 998
    fields = parse(raw).get_payload()[1].get_payload()[1]
    assert fields["Diagnostic-Code"].startswith("X-Postroom; x x")


def test_delayed_and_several_recipients() -> None:
    delayed = DsnRecipient("carol@remote.test", DsnAction.DELAYED, "4.4.1",
                           "connection refused", is_smtp_diagnostic=False,
                           will_retry_until=WHEN + dt.timedelta(days=4))
    message = parse(render_dsn(make_report(BOUNCE, delayed), date=WHEN, message_id="d@h"))
    blocks = message.get_payload()[1].get_payload()
    assert [b["Final-Recipient"] for b in blocks[1:]] == [
        "rfc822; bob@remote.test", "rfc822; carol@remote.test"]
    assert blocks[2]["Action"] == "delayed"
    assert blocks[2]["Will-Retry-Until"]
    assert "Remote-MTA" not in blocks[2]
    only_delayed = parse(render_dsn(make_report(delayed), date=WHEN, message_id="d@h"))
    assert only_delayed["Subject"].startswith("Delayed Mail")


def test_render_is_pure() -> None:
    first = render_dsn(make_report(BOUNCE), date=WHEN, message_id="same@h")
    assert first == render_dsn(make_report(BOUNCE), date=WHEN, message_id="same@h")
