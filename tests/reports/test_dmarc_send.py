"""The DMARC report job's choices (reports/dmarcsend.py) and the recorder's cap
(reports/dmarcrecord.py), over a real store and the test DNS server: §7.1 external
destinations (agreed, not agreed, DNS failing), `!size`, at most two rua addresses, and a
buffer that stops growing."""

from __future__ import annotations

import datetime as dt
import email.policy
import gzip
import json
import logging
from collections.abc import Sequence
from email.message import EmailMessage
from email.parser import BytesParser

import pytest

from postroom.clock import ManualClock
from postroom.dns.live import LiveResolver
from postroom.mailauth.dkim import DkimResult
from postroom.mailauth.dmarc import evaluate_dmarc, parse_dmarc_record
from postroom.mailauth.spf import SpfResult, SpfVerdict
from postroom.reports import dmarcrecord
from postroom.reports.dmarcrecord import DmarcRecorder
from postroom.reports.dmarcsend import DmarcReportJob
from postroom.reports.mailing import MailtoUri
from postroom.runtime import Runtime
from tests.support.dnsserver import DnsTestServer

NOW = dt.datetime(2026, 12, 6, 15, 0, tzinfo=dt.UTC)
ZONE = """$TTL 60
sender.example._report._dmarc.agreed.example. TXT "v=DMARC1"
sender.example._report._dmarc.other.example.  TXT "v=spf1 -all"
"""


class Outbox:
    """Collects what the job queues (the queue itself is tested in tests/queue/)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, list[str], bytes]] = []

    async def __call__(self, sender: str, recipients: Sequence[str], raw: bytes) -> None:
        self.sent.append((sender, list(recipients), raw))


def _record(recorder: DmarcRecorder, ip: str, rua: str) -> None:
    record = parse_dmarc_record(f"v=DMARC1; p=none; rua={rua}")
    spf = SpfResult(SpfVerdict.PASS, "sender.example", "", "smtp.mailfrom", "a@sender.example")
    result = evaluate_dmarc("sender.example", record, "sender.example", spf, [])
    recorder.record(ip, spf, list[DkimResult](), result)


async def test_destinations_are_verified_and_limited(runtime: Runtime) -> None:
    rua = ("mailto:a@sender.example,mailto:b@agreed.example,mailto:c@other.example")
    recorder = DmarcRecorder(runtime.store, ManualClock(NOW))
    _record(recorder, "192.0.2.1", rua)
    assert await recorder.flush() == 1
    with DnsTestServer(ZONE) as dns_server:
        outbox = Outbox()
        job = DmarcReportJob(runtime.config, runtime.store,
                             LiveResolver([dns_server.nameserver], timeout=2,
                                          cache_size=0), outbox)
        # Two rua addresses used of three: the third is never looked at.
        assert await job.run(NOW.date()) == "2 report(s) sent, 0 destination(s) skipped"
        assert [r for _, r, _ in outbox.sent] == [["a@sender.example"], ["b@agreed.example"]]
        assert await job._may_send("sender.example", MailtoUri("c@other.example"), 10) \
            is False  # a TXT record, but not v=DMARC1
        assert await job._may_send("sender.example", MailtoUri("d@nobody.example"), 10) \
            is False
        assert await job._may_send("sender.example", MailtoUri("a@sender.example", 100),
                                   101) is False  # over its !size
        dns_server.fail("sender.example._report._dmarc.agreed.example")
        assert await job._may_send("sender.example", MailtoUri("b@agreed.example"), 10) \
            is False  # a temporary failure: not this time


async def test_one_report_per_domain_with_the_days_counts(runtime: Runtime) -> None:
    recorder = DmarcRecorder(runtime.store, ManualClock(NOW))
    for ip in ("192.0.2.1", "192.0.2.1", "192.0.2.2"):
        _record(recorder, ip, "mailto:a@sender.example")
    await recorder.flush()
    _record(recorder, "192.0.2.1", "mailto:a@sender.example")  # a second flush adds up
    await recorder.flush()
    outbox = Outbox()
    job = DmarcReportJob(runtime.config, runtime.store, LiveResolver([], timeout=1), outbox)
    await job.run(NOW.date())
    ((sender, _, raw),) = outbox.sent
    assert sender == "noreply-reports@example.test"
    xml = _attachment(raw)
    assert xml.count(b"<record>") == 2 and b"<count>3</count>" in xml
    # The policy kept with the counts is the record as last seen that day.
    assert json.loads((await runtime.store.dmarc_policies_for_day(NOW.date()))[0].policy)[
        "rua"] == ["mailto:a@sender.example"]


def _attachment(raw: bytes) -> bytes:
    message = BytesParser(policy=email.policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    (part,) = list(message.iter_attachments())
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return gzip.decompress(payload)


async def test_the_buffer_stops_growing(runtime: Runtime, monkeypatch: pytest.MonkeyPatch,
                                        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(dmarcrecord, "MAX_BUFFERED", 2)
    recorder = DmarcRecorder(runtime.store, ManualClock(NOW))
    for ip in ("192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.1"):
        _record(recorder, ip, "mailto:a@sender.example")
    with caplog.at_level(logging.WARNING, logger="postroom.reports.dmarcrecord"):
        assert await recorder.flush() == 2
    assert "1 DMARC evaluations not recorded: buffer full" in caplog.text
    counts = await runtime.store.dmarc_counts_for_day(NOW.date(), "sender.example", 10)
    assert sorted(c.count for c in counts) == [1, 2]
