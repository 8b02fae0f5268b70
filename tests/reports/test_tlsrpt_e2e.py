"""TLS-RPT end to end over real sockets: a running App delivers to a receiving MX with
STARTTLS (tests/queue/fakemx.py) for two recipient domains — one without a policy, one
whose MTA-STS policy (testing) names another MX, so its certificate does not match —;
the daily job reads each domain's `_smtp._tls` record from the test DNS server and sends
its report as DKIM-signed mail (through the same outbound queue) and over HTTPS (a
loopback server with a trustme certificate, verified against SMTP_TLS_CAFILE). The
reports are checked against RFC 8460 §4.4's schema, the mail's signature with dkimpy,
then the mail is sent back to our report address over SMTP and `postroom reports tls`
summarises it."""

from __future__ import annotations

import asyncio
import datetime as dt
import email.policy
import gzip
import json
import re
import smtplib
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import dkim
import dns.message
import dns.query
import dns.rdatatype
import jsonschema
import pytest
import trustme

from postroom.mailauth import keys
from postroom.outbound.signing import keys_dir
from postroom.reports.tlsrptsend import TlsReportJob
from tests.conftest import make_config
from tests.queue.fakemx import FakeMx, Transaction
from tests.reports.httpsserver import HttpsCollector
from tests.support.dnsserver import DnsTestServer
from tests.support.server import NO_DNS_CHECKS, AppThread, write_env

SCHEMA = json.loads((Path(__file__).parent / "data" / "tlsrpt-report.schema.json").read_text())
PLAIN, STS = "example.net", "sts.example"
RUA_MAILBOX = "tlsrpt@reports.example"
REPORT_ADDRESS = "tls-reports@example.test"
SENDER = "noreply-reports@example.test"


@pytest.fixture
def https(trustme_ca: trustme.CA) -> Iterator[HttpsCollector]:
    server = HttpsCollector.started(trustme_ca, f"mta-sts.{STS}", "127.0.0.1")
    server.policy = (f"version: STSv1\r\nmode: testing\r\nmx: mx.{STS}\r\nmax_age: 86400\r\n"
                     .encode())
    yield server
    server.stop()


@pytest.fixture
async def mx(trustme_ca: trustme.CA) -> AsyncIterator[FakeMx]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    # Names the MX of PLAIN only: STS's policy check fails with certificate-host-mismatch.
    trustme_ca.issue_cert(f"mx.{PLAIN}").configure_cert(context)
    async with FakeMx(tls_context=context) as server:
        yield server


def zone(dns_server: DnsTestServer, https_port: int) -> None:
    for domain in (PLAIN, STS, "reports.example"):
        dns_server.add(domain, "MX", f"10 mx.{domain}.")
        dns_server.add(f"mx.{domain}", "A", "127.0.0.1")
    dns_server.add(f"_mta-sts.{STS}", "TXT", "v=STSv1; id=20261207;")
    dns_server.add(f"mta-sts.{STS}", "A", "127.0.0.1")
    dns_server.add(f"_smtp._tls.{PLAIN}", "TXT",
                   f"v=TLSRPTv1; rua=mailto:{RUA_MAILBOX},https://127.0.0.1:{https_port}/v1/tls")
    dns_server.add(f"_smtp._tls.{STS}", "TXT", f"v=TLSRPTv1; rua=mailto:{RUA_MAILBOX}")


async def until(condition: Callable[[], bool], what: str, seconds: float = 60) -> None:
    """Wait for something the servers do in the background (bounded, never asserted on)."""
    for _ in range(int(seconds * 20)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


def dns_txt(server: DnsTestServer) -> Callable[..., bytes]:
    """dkimpy's DNS hook, asking the test DNS server (UDP, dnspython)."""
    host, _, port = server.address.rpartition(":")

    def lookup(name: bytes, timeout: int = 5) -> bytes:
        query = dns.message.make_query(name.decode(), dns.rdatatype.TXT)
        answer = dns.query.udp(query, host, timeout=timeout, port=int(port))
        return b"".join(b"".join(rdata.strings) for rrset in answer.answer for rdata in rrset)
    return lookup


def report_of(transaction: Transaction) -> tuple[EmailMessage, dict[str, Any]]:
    message = BytesParser(policy=email.policy.default).parsebytes(transaction.content)
    assert isinstance(message, EmailMessage)
    (part,) = [p for p in message.iter_attachments()]
    assert part.get_content_type() == "application/tlsrpt+gzip"
    filename = part.get_filename() or ""
    domain = message["TLS-Report-Domain"]
    assert re.fullmatch(rf"mail\.example\.test!{re.escape(domain)}!\d+!\d+!\w+\.json\.gz",
                        filename)
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return message, json.loads(gzip.decompress(payload))


def sessions(report: dict[str, Any]) -> dict[str, tuple[int, int, list[str]]]:
    return {entry["policy"]["policy-type"]: (
        entry["summary"]["total-successful-session-count"],
        entry["summary"]["total-failure-session-count"],
        [detail["result-type"] for detail in entry.get("failure-details", [])])
        for entry in report["policies"]}


async def test_a_day_of_deliveries_is_reported_and_the_report_reads_back(
        tmp_path: Path, server_cert: tuple[Path, Path], trustme_ca: trustme.CA,
        mx: FakeMx, https: HttpsCollector) -> None:
    ca_file = tmp_path / "ca.pem"
    trustme_ca.cert_pem.write_to_path(ca_file)
    with DnsTestServer() as dns_server:
        https_port = https.port
        zone(dns_server, https_port)
        settings: dict[str, object] = {
            "OUTBOUND_SMTP_PORT": mx.port, "DNS_NAMESERVERS": dns_server.address,
            "SMTP_TLS_CAFILE": str(ca_file), "MTA_STS_FETCH_PORT": https_port,
            "REPORT_ADDRESS": REPORT_ADDRESS, "REPORT_ORG_NAME": "Postroom Test",
            "ENABLE_DANE": 0, **NO_DNS_CHECKS}
        config = make_config(tmp_path, server_cert, **settings)
        key = await asyncio.to_thread(keys.generate_key, keys_dir(config), "example.test",
                                      bits=1024)
        dns_server.add("mail._domainkey.example.test", "TXT",
                       keys.public_txt_value(key.private_path.read_bytes()))
        app = AppThread(config)
        await asyncio.to_thread(app.__enter__)
        try:
            await _run(app, mx, https, dns_server, tmp_path, tmp_path / "data")
        finally:
            await asyncio.to_thread(app.stop)


async def _run(app: AppThread, mx: FakeMx, https: HttpsCollector, dns_server: DnsTestServer,
               tmp_path: Path, data_dir: Path) -> None:
    call = app.call
    await asyncio.to_thread(app.add_account, REPORT_ADDRESS, "secret")
    # A day of traffic: two messages to PLAIN, one to STS (its MX fails the policy check,
    # mode testing: delivered anyway, the failure reported).
    for recipient in (f"bob@{PLAIN}", f"carol@{PLAIN}", f"dave@{STS}"):
        raw = (f"From: <alice@example.test>\r\nTo: <{recipient}>\r\nSubject: hi\r\n\r\n"
               "Hi.\r\n").encode()
        await asyncio.to_thread(call, app.app.queue.enqueue_message(
            "alice@example.test", [recipient], raw))
    await until(lambda: len(mx.transactions) >= 3, "three deliveries")
    reports = app.app.reports
    assert reports is not None and reports.tls_outcomes is not None
    await asyncio.to_thread(call, reports.tls_outcomes.flush())
    (job,) = [job for job in reports.daily.jobs if isinstance(job, TlsReportJob)]
    today = dt.datetime.now(dt.UTC).date()
    summary = await asyncio.to_thread(call, job.run(today))
    assert summary.startswith("3 sent, 0 failed")  # PLAIN: mail + HTTPS; STS: mail

    await until(lambda: len(mx.transactions) >= 5, "two report mails")
    mailed = {}
    for transaction in mx.transactions[3:]:
        assert transaction.recipients == [RUA_MAILBOX] and transaction.is_tls
        assert dkim.verify(transaction.content, dnsfunc=dns_txt(dns_server))
        message, report = report_of(transaction)
        jsonschema.validate(report, SCHEMA)
        assert message.get_content_type() == "multipart/report"
        assert message.get_param("report-type") == "tlsrpt"
        assert message["TLS-Report-Submitter"] == "mail.example.test"
        assert message["From"] == SENDER and transaction.sender == SENDER
        assert report["organization-name"] == "Postroom Test"
        assert report["contact-info"] == SENDER
        assert report["date-range"]["start-datetime"] == f"{today.isoformat()}T00:00:00Z"
        mailed[message["TLS-Report-Domain"]] = (transaction, report)
    assert set(mailed) == {PLAIN, STS}

    plain = sessions(mailed[PLAIN][1])
    assert list(plain) == ["no-policy-found"]
    successful, failed, failures = plain["no-policy-found"]
    assert successful >= 1 and (failed, failures) == (0, [])  # one session may carry both
    sts = sessions(mailed[STS][1])
    assert sts["sts"][1:] == (1, ["certificate-host-mismatch"])
    (entry,) = mailed[STS][1]["policies"]
    assert entry["policy"]["mx-host"] == [f"mx.{STS}"]
    assert "mode: testing" in entry["policy"]["policy-string"]
    assert entry["failure-details"][0]["receiving-mx-hostname"] == f"mx.{STS}"

    assert https.posted.wait(30)
    ((path, content_type, body),) = https.posts
    assert (path, content_type) == ("/v1/tls", "application/tlsrpt+gzip")
    posted = json.loads(gzip.decompress(body))
    jsonschema.validate(posted, SCHEMA)
    assert sessions(posted) == plain

    # The report mail sent back to our report address, as a reporter would send it.
    transaction = mailed[STS][0]
    port = app.port("smtp")
    await asyncio.to_thread(_send, port, transaction.content)
    intake = reports.intake
    await until(lambda: intake.handled >= 1, "the report intake")
    env = write_env(tmp_path / "postroom.env", {  # the App's store (write_env: PostgreSQL's)
        "DATA_DIR": data_dir, "OVERRIDE_HOSTNAME": "mail.example.test"})
    shown = await asyncio.to_thread(_cli, env, "reports", "tls", "--domain", STS)
    assert shown.returncode == 0, shown.stderr
    assert "Postroom Test" in shown.stdout and STS in shown.stdout
    assert "certificate-host-mismatch 1" in shown.stdout
    nothing = await asyncio.to_thread(_cli, env, "reports", "tls", "--domain", "other.example")
    assert nothing.returncode == 0 and "no TLS-RPT reports" in nothing.stderr


def _send(port: int, raw: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail("tlsrpt@reports.example", [REPORT_ADDRESS], raw)


def _cli(env: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "postroom", "--config", str(env), *args],
                          capture_output=True, text=True, timeout=120)
