"""Issue 24: one log line format for everything. Lines carry TZ's local time with its
offset; lifecycle lines (`announce`: listening, ready) are printed at every LOG_LEVEL in
that same format; the SPF line has no trailing space when pyspf gives no explanation."""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Iterator

import pytest

from postroom import logsetup
from postroom.checks.spf import evaluate_spf
from postroom.clock import display_zone
from postroom.dns.fake import FakeResolver

LINE = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3})([+-]\d{4}) (\w+) (\S+): (.*)")


@pytest.fixture
def stderr(capsys: pytest.CaptureFixture[str]) -> Iterator[pytest.CaptureFixture[str]]:
    """setup_logging's handler writes to the sys.stderr capsys installs; the root logger
    is restored afterwards."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    yield capsys
    root.handlers[:], root.level = saved


def lines(capsys: pytest.CaptureFixture[str]) -> list[re.Match[str]]:
    text = capsys.readouterr().err
    found = [LINE.fullmatch(line) for line in text.splitlines()]
    assert all(found), text
    return [match for match in found if match]


def test_log_time_is_local_to_tz_with_its_offset(stderr: pytest.CaptureFixture[str]) -> None:
    logsetup.setup_logging("info", timezone="Asia/Shanghai")
    logging.getLogger("postroom.test").info("hello")
    (line,) = lines(stderr)
    assert line.group(3) == "+0800"
    stamp = dt.datetime.strptime(line.group(1) + line.group(3), "%Y-%m-%d %H:%M:%S%z")
    assert abs(stamp - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)
    assert line.group(4, 5, 6) == ("INFO", "postroom.test", "hello")


def test_announce_prints_at_every_level_in_the_same_format(
        stderr: pytest.CaptureFixture[str]) -> None:
    logsetup.setup_logging("error", "smtp-1", timezone="UTC")
    logging.getLogger("postroom").info("not shown at LOG_LEVEL=error")
    logsetup.announce("%s listening on %s:%d", "imap", "0.0.0.0", 143)
    logging.getLogger("postroom").error("shown")
    announced, error = lines(stderr)
    assert announced.group(3, 4, 5, 6) == ("+0000", "INFO", "postroom[smtp-1]",
                                           "imap listening on 0.0.0.0:143")
    assert error.group(4, 6) == ("ERROR", "shown")


def test_display_zone() -> None:
    assert display_zone("UTC") is dt.UTC
    shanghai = dt.datetime(2026, 1, 1, tzinfo=dt.UTC).astimezone(display_zone("Asia/Shanghai"))
    assert shanghai.utcoffset() == dt.timedelta(hours=8)


async def test_spf_line_has_no_trailing_space(caplog: pytest.LogCaptureFixture) -> None:
    resolver = FakeResolver({"example.org": {"A": ["192.0.2.1"]}})  # no SPF record
    with caplog.at_level(logging.INFO, logger="postroom"):
        result = await evaluate_spf(resolver, "192.0.2.9", "someone@example.org", "client.test")
    assert result.explanation == ""  # the case that left a dangling separator
    (message,) = [r.getMessage() for r in caplog.records if "spf=" in r.getMessage()]
    assert message == ("client=192.0.2.9 spf=none smtp.mailfrom=someone@example.org")
