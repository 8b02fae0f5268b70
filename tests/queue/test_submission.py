from __future__ import annotations

import datetime as dt
import email
import email.policy

from postroom.mail.submission import complete_submission, missing_submission_headers

NOW = dt.datetime(2026, 3, 1, 10, 0, tzinfo=dt.UTC)


def test_adds_date_and_message_id_when_missing() -> None:
    raw = b"From: a@example.test\r\nSubject: hi\r\n\r\nbody\r\n"
    fixed = complete_submission(raw, hostname="mail.example.test", now=NOW, token="abc")
    message = email.message_from_bytes(fixed, policy=email.policy.default)
    assert message["Message-ID"] == "<abc@mail.example.test>"
    assert email.utils.parsedate_to_datetime(message["Date"]) == NOW
    assert fixed.endswith(raw)


def test_keeps_existing_headers_case_insensitively() -> None:
    raw = (b"date: Sun, 1 Mar 2026 09:00:00 +0000\r\nMESSAGE-ID: <x@y>\r\n"
           b"Subject: hi\r\n\r\nDate: in the body does not count\r\n")
    assert missing_submission_headers(raw, hostname="h.test", now=NOW) == b""


def test_body_fields_do_not_count() -> None:
    raw = b"Subject: hi\r\n\r\nMessage-ID: <body@x>\r\nDate: no\r\n"
    added = missing_submission_headers(raw, hostname="h.test", now=NOW, token="t")
    assert added.startswith(b"Date: ") and b"Message-ID: <t@h.test>\r\n" in added


def test_random_ids_differ() -> None:
    raw = b"Subject: hi\r\n\r\n"
    first = missing_submission_headers(raw, hostname="h.test", now=NOW)
    assert first != missing_submission_headers(raw, hostname="h.test", now=NOW)
