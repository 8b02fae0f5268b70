"""Issue 24: TZ sets the zone of every date postroom writes. A real `postroom serve` with
TZ=Asia/Shanghai in its config file (and no TZ in its environment, so libc's local time
is UTC) writes Received, the Date added on submission, the bounce's Date/Arrival-Date/
Last-Attempt-Date and its log lines at +0800 — the current time in Shanghai, not UTC
relabelled — and every log line, "listening" ones included, has the same format."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import poplib
import re
import smtplib
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest

from tests.support.dnsserver import DnsTestServer
from tests.support.server import NO_DNS_CHECKS, ServeProcess, local_serve_env, write_env

ZONE = "Asia/Shanghai"  # +0800 all year (no daylight saving time): the offset is certain
OFFSET = "+0800"
USER, PASSWORD = "alice@example.test", "pw-alice"
NOWHERE = "x@nowhere.test"  # null MX: bounced at once
LOG_LINE = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d{3}([+-]\d{4}) [A-Z]+ \S+: ")


@pytest.fixture
def served(tmp_path: Path, server_cert: tuple[Path, Path],
           monkeypatch: pytest.MonkeyPatch) -> Iterator[ServeProcess]:
    monkeypatch.delenv("TZ", raising=False)  # the zone must come from the config file
    with DnsTestServer() as dns:
        dns.add("nowhere.test.", "MX", "0 .")
        env = write_env(tmp_path / "postroom.env", local_serve_env(
            tmp_path / "data", server_cert, TZ=ZONE, LOG_LEVEL="info", SMTP_PROCESSES=2,
            DNS_NAMESERVERS=dns.address, **NO_DNS_CHECKS))
        added = subprocess.run([sys.executable, "-m", "postroom", "--config", str(env),
                                "email", "add", USER, PASSWORD],
                               capture_output=True, text=True, timeout=60)
        assert added.returncode == 0, added.stderr
        with ServeProcess(env) as process:
            yield process


def inbox(process: ServeProcess, tls: ssl.SSLContext) -> list[email.message.EmailMessage]:
    pop = poplib.POP3_SSL("127.0.0.1", process.ports["pop3s"], context=tls, timeout=20)
    pop.user(USER)
    pop.pass_(PASSWORD)
    raw = [b"\r\n".join(pop.retr(n)[1]) for n in range(1, pop.stat()[0] + 1)]
    pop.quit()
    return [email.message_from_bytes(m, policy=email.policy.default)  # type: ignore[misc]
            for m in raw]


def wait_for_two(process: ServeProcess, tls: ssl.SSLContext
                 ) -> list[email.message.EmailMessage]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        messages = inbox(process, tls)
        if len(messages) >= 2:
            return messages
        time.sleep(0.2)
    raise AssertionError("the message and its bounce did not both arrive")


def assert_local_now(date_text: str) -> None:
    """`date_text` carries +0800 and names the present moment (within minutes)."""
    assert date_text.rstrip().endswith(OFFSET), date_text
    when = parsedate_to_datetime(date_text.strip())
    assert abs(when - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5), date_text


def test_dates_written_and_logged_in_tz(served: ServeProcess, client_tls: ssl.SSLContext
                                        ) -> None:
    body = f"From: <{USER}>\r\nTo: <{USER}>\r\nSubject: zoned\r\n\r\nno Date header\r\n"
    with smtplib.SMTP("127.0.0.1", served.ports["submission"], timeout=20) as smtp:
        smtp.starttls(context=client_tls)
        smtp.login(USER, PASSWORD)
        smtp.sendmail(USER, [USER, NOWHERE], body.encode())
    messages = wait_for_two(served, client_tls)
    delivered = next(m for m in messages if m["Subject"] == "zoned")
    bounce = next(m for m in messages if m.get_content_type() == "multipart/report")

    # Received (RFC 5321 §4.4: "; date-time" at the end) and the Date submission added.
    assert_local_now(str(delivered["Received"]).rpartition(";")[2])
    assert_local_now(str(delivered["Date"]))

    assert_local_now(str(bounce["Date"]))
    status = bounce.get_payload()[1].get_payload()  # type: ignore[union-attr,index]
    per_message, per_recipient = status[0], status[1]
    assert_local_now(str(per_message["Arrival-Date"]))
    assert_local_now(str(per_recipient["Last-Attempt-Date"]))

    served.stop()
    lines = [line.rstrip("\n") for line in served.output if line.strip()]
    listening = {line.partition(" postroom: ")[2].split()[0] for line in lines
                 if " listening on " in line}
    assert {"smtp", "submission", "imaps", "pop3s"} <= listening, lines
    for line in lines:
        match = LOG_LINE.match(line)
        assert match, f"not in the log format: {line!r}"
        assert match.group(2) == OFFSET, line
        assert line == line.rstrip(), f"trailing space: {line!r}"
        stamp = dt.datetime.strptime(match.group(1) + match.group(2), "%Y-%m-%d %H:%M:%S%z")
        assert abs(stamp - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5), line
