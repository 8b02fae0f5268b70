from __future__ import annotations

import datetime as dt
import email.utils

from postroom.mail.submission import missing_submission_headers

NOW = dt.datetime(2026, 3, 1, 10, 0, tzinfo=dt.UTC)


def test_adds_date_and_message_id_when_missing() -> None:
    added = missing_submission_headers({"from", "subject"}, hostname="mail.example.test",
                                       now=NOW, token="abc")
    date_line, id_line = added.decode().splitlines()
    assert id_line == "Message-ID: <abc@mail.example.test>"
    assert email.utils.parsedate_to_datetime(date_line.removeprefix("Date: ")) == NOW


def test_keeps_existing_headers() -> None:
    assert missing_submission_headers({"date", "message-id"}, hostname="h.test", now=NOW) == b""
    assert missing_submission_headers({"date"}, hostname="h.test", now=NOW,
                                      token="t") == b"Message-ID: <t@h.test>\r\n"


def test_random_ids_differ() -> None:
    first = missing_submission_headers(set(), hostname="h.test", now=NOW)
    assert first != missing_submission_headers(set(), hostname="h.test", now=NOW)
