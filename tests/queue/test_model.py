from __future__ import annotations

import datetime as dt

import pytest

from postroom.outbound.model import (
    Outcome,
    attempt_from_reply,
    count_received,
    enhanced_status,
    group_by_destination,
    group_transactions,
    strip_return_path,
    summarize_queue,
)
from postroom.store.api import QueueEntry

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def entry(id_: int, message: str, recipient: str, *, attempts: int = 0,
          next_attempt: dt.datetime = T0, error: str = "") -> QueueEntry:
    return QueueEntry(id=id_, message_id=message, sender="a@example.test", recipient=recipient,
                      domain=recipient.rpartition("@")[2], blob_id=f"blob{message}", size=10,
                      created=T0, next_attempt=next_attempt, attempts=attempts,
                      last_error=error)


@pytest.mark.parametrize(("code", "text", "status"), [
    (550, "5.1.1 no such user", "5.1.1"),
    (550, "no such user", "5.0.0"),
    (451, "4.7.1 greylisted", "4.7.1"),
    (451, "5.7.1 mismatched class", "4.0.0"),  # RFC 3463 §2: class follows the code
    (250, "2.6.0 queued", "2.6.0"),
])
def test_enhanced_status(code: int, text: str, status: str) -> None:
    assert enhanced_status(code, text) == status


def test_attempt_classification() -> None:
    assert attempt_from_reply(250, "ok", "mx").outcome is Outcome.DELIVERED
    failed = attempt_from_reply(550, "5.1.1  no\nsuch user", "mx.r")
    assert (failed.outcome, failed.status, failed.diagnostic) == (
        Outcome.FAILED, "5.1.1", "550 5.1.1 no such user")
    assert failed.is_remote_reply and failed.remote_mta == "mx.r"
    odd = attempt_from_reply(354, "go ahead", "mx")
    assert odd.outcome is Outcome.DEFERRED and odd.status.startswith("4.")


def test_grouping_by_destination_and_message() -> None:
    rows = [entry(1, "m1", "x@a.test"), entry(2, "m1", "y@a.test"), entry(3, "m1", "z@b.test"),
            entry(4, "m2", "w@a.test")]
    by_domain = group_by_destination(rows, has_relay=False)
    assert {k: [e.id for e in v] for k, v in by_domain.items()} == {
        "a.test": [1, 2, 4], "b.test": [3]}
    assert list(group_by_destination(rows, has_relay=True)) == ["[relay]"]
    assert [[e.id for e in t] for t in group_transactions(by_domain["a.test"])] == [[1, 2], [4]]


def test_transactions_hold_at_most_100_recipients() -> None:
    rows = [entry(i, "m", f"u{i}@a.test") for i in range(250)]
    assert [len(t) for t in group_transactions(rows)] == [100, 100, 50]


def test_summary_for_queue_list() -> None:
    later = T0 + dt.timedelta(minutes=5)
    rows = [entry(1, "m1", "x@a.test", attempts=2, next_attempt=later, error="451 busy"),
            entry(2, "m1", "y@b.test", attempts=1, next_attempt=T0),
            entry(3, "m0", "z@c.test", next_attempt=later)]
    first, second = summarize_queue(rows)
    assert first.message_id == "m1"
    assert first.recipients == ("x@a.test", "y@b.test")
    assert (first.attempts, first.next_attempt, first.last_error) == (2, T0, "451 busy")
    assert second.message_id == "m0"


def test_strip_return_path() -> None:
    raw = b"Return-Path: <a@b>\r\nReturn-Path:\r\n <c@d>\r\nFrom: x\r\n\r\nReturn-Path: body\r\n"
    assert strip_return_path(raw) == b"From: x\r\n\r\nReturn-Path: body\r\n"
    assert strip_return_path(b"From: x\r\n\r\n") == b"From: x\r\n\r\n"
    assert strip_return_path(b"Return-Path: <a@b>") == b""


def test_count_received_ignores_body() -> None:
    raw = b"Received: a\r\nReceived: b\r\n c\r\nFrom: x\r\n\r\nReceived: body\r\n"
    assert count_received(raw) == 2
