"""The daily TLS-RPT job's destinations, over real HTTPS on loopback: every rua of a
domain is tried, one failing (non-2xx, an untrusted certificate, a server that never
answers, a refused enqueue) does not stop the others nor fail the day; domains without
a record or whose DNS fails are not reported; the day's outcomes are forgotten after."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import jsonschema
import pytest
import trustme

from postroom.clock import ManualClock
from postroom.dns.fake import FakeResolver
from postroom.reports import tlsrptsend
from postroom.reports.tlsrptjson import Reporter
from postroom.reports.tlsrptsend import TlsReportJob
from postroom.runtime import Runtime
from postroom.store.tlsreports_api import TlsOutcomeCount
from tests.reports.httpsserver import HttpsCollector

SCHEMA = json.loads((Path(__file__).parent / "data" / "tlsrpt-report.schema.json").read_text())
DAY = dt.date(2026, 12, 6)
REPORTER = Reporter("Example Org", "noreply-reports@example.test", "mail.example.test")


class Queued:
    """What the job hands the outbound queue (the queue itself: test_tlsrpt_e2e.py)."""

    def __init__(self, refuse: str = "") -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.refuse = refuse

    async def __call__(self, sender: str, recipients: Sequence[str], raw: bytes) -> None:
        if recipients[0] == self.refuse:
            raise OSError("disk full")
        self.messages.append((sender, list(recipients), raw))


@pytest.fixture
def good(trustme_ca: trustme.CA) -> Iterator[HttpsCollector]:
    server = HttpsCollector.started(trustme_ca, "127.0.0.1")
    yield server
    server.stop()


@pytest.fixture
def ca_file(trustme_ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    trustme_ca.cert_pem.write_to_path(path)
    return str(path)


async def _outcomes(runtime: Runtime, *domains: str) -> None:
    await runtime.store.add_tls_outcomes([
        TlsOutcomeCount(DAY, domain, "no-policy-found", (), f"mx.{domain}", "192.0.2.1", "",
                        "", 4) for domain in domains])


def _job(runtime: Runtime, resolver: FakeResolver, queued: Queued, ca_file: str
         ) -> TlsReportJob:  # fmt: skip
    return TlsReportJob(runtime.store, resolver, queued, REPORTER, ManualClock(),
                        cafile=ca_file)


async def test_every_destination_is_tried_and_failures_do_not_stop_the_others(
        runtime: Runtime, trustme_ca: trustme.CA, good: HttpsCollector, ca_file: str) -> None:
    refusing = HttpsCollector.started(trustme_ca, "127.0.0.1")
    refusing.status = 500
    stranger = HttpsCollector.started(trustme.CA(), "127.0.0.1")  # not in SMTP_TLS_CAFILE
    try:
        resolver = FakeResolver()
        resolver.add("_smtp._tls.example.net", "TXT", "v=TLSRPTv1; rua="
                     f"https://127.0.0.1:{refusing.port}/r,https://127.0.0.1:{stranger.port}/r,"
                     f"mailto:refused@example.net,mailto:tls@example.net,"
                     f"https://127.0.0.1:{good.port}/reports?via=tlsrpt")
        resolver.add("_smtp._tls.other.example", "TXT", "v=spf1 -all")  # not TLS-RPT
        resolver.add("_smtp._tls.broken.example", "TXT", "v=TLSRPTv1; rua=mailto:x@y.example")
        resolver.fail("_smtp._tls.broken.example")
        await _outcomes(runtime, "example.net", "other.example", "broken.example")
        queued = Queued(refuse="refused@example.net")
        summary = await _job(runtime, resolver, queued, ca_file).run(DAY)
    finally:
        refusing.stop()
        stranger.stop()
    assert summary == "2 sent, 3 failed, 2 of 3 domains without a TLS-RPT record"
    ((sender, recipients, raw),) = queued.messages
    assert (sender, recipients) == ("noreply-reports@example.test", ["tls@example.net"])
    assert b"multipart/report" in raw and b'report-type="tlsrpt"' in raw
    ((path, content_type, body),) = good.posts
    assert (path, content_type) == ("/reports?via=tlsrpt", "application/tlsrpt+gzip")
    report = json.loads(gzip.decompress(body))
    jsonschema.validate(report, SCHEMA)
    assert report["policies"][0]["summary"]["total-successful-session-count"] == 4
    assert len(refusing.posts) == 1 and not stranger.posts  # the handshake failed
    assert await runtime.store.tls_outcomes(DAY) == []  # sent: forgotten


async def test_a_server_that_never_answers_is_given_up(
        runtime: Runtime, good: HttpsCollector, ca_file: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tlsrptsend, "HTTPS_TIMEOUT", 0.5)
    good.stall = True
    resolver = FakeResolver()
    resolver.add("_smtp._tls.example.net", "TXT",
                 f"v=TLSRPTv1;rua=https://127.0.0.1:{good.port}/")
    await _outcomes(runtime, "example.net")
    summary = await _job(runtime, resolver, Queued(), ca_file).run(DAY)
    assert summary.startswith("0 sent, 1 failed")


async def test_a_report_past_the_size_limit_is_not_sent(
        runtime: Runtime, good: HttpsCollector, ca_file: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tlsrptsend, "MAX_REPORT", 100)
    resolver = FakeResolver()
    resolver.add("_smtp._tls.example.net", "TXT",
                 f"v=TLSRPTv1; rua=mailto:tls@example.net,https://127.0.0.1:{good.port}/")
    await _outcomes(runtime, "example.net")
    queued = Queued()
    summary = await _job(runtime, resolver, queued, ca_file).run(DAY)
    assert summary.startswith("0 sent, 1 failed")
    assert not queued.messages and not good.posts


async def test_a_day_without_outcomes_sends_nothing(runtime: Runtime, ca_file: str) -> None:
    summary = await _job(runtime, FakeResolver(), Queued(), ca_file).run(DAY)
    assert summary == "0 sent, 0 failed, 0 of 0 domains without a TLS-RPT record"
