"""DMARC aggregate reports end to end over real sockets: a day of mail from three sending
domains arrives over SMTP at a running App (SPF, DKIM and DMARC judged against the test
DNS server); the daily job sends each domain's report to its rua — through the outbound
queue to a loopback MX (tests/queue/fakemx.py) — except where the rua is in another
organisation that has not agreed to take the reports (RFC 7489 §7.1). Each report is
checked: DKIM signature (dkimpy, the test DNS key), file name (§7.2.1.1), XML against
RFC 7489 Appendix C's schema, and its rows. Then one report is sent back to our report
address over SMTP: it is still delivered, read by the intake, and `postroom reports
dmarc` (a subprocess) shows it. `postroom reports send` runs a day once."""

from __future__ import annotations

import asyncio
import datetime as dt
import email.policy
import gzip
import re
import smtplib
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import dkim
import dns.message
import dns.query
import dns.rdatatype
import pytest
import xmlschema

from postroom.mailauth import keys
from postroom.outbound.signing import keys_dir
from postroom.reports.dmarcsend import DmarcReportJob
from postroom.reports.dmarcxml import parse_feedback
from tests.conftest import make_config
from tests.queue.fakemx import FakeMx, Transaction
from tests.support.dnsserver import DnsTestServer
from tests.support.server import AppThread, write_env

SCHEMA = xmlschema.XMLSchema(Path(__file__).parent / "data" / "rfc7489-appendix-c.xsd")
REPORT_ADDRESS = "dmarc-reports@example.test"
USER = "user@example.test"
SENDER_RUA, PARTNER_RUA = "dmarc@sender.example", "agg@reports.example"

ZONE = f"""$TTL 60
sender.example.             MX  10 mx.sender.example.
mx.sender.example.          A   127.0.0.1
sender.example.             TXT "v=spf1 ip4:127.0.0.1 -all"
_dmarc.sender.example.      TXT "v=DMARC1; p=none; rua=mailto:{SENDER_RUA}"
partner.example.            TXT "v=spf1 ip4:127.0.0.1 -all"
_dmarc.partner.example.     TXT "v=DMARC1; p=quarantine; rua=mailto:{PARTNER_RUA}!1m"
stranger.example.           TXT "v=spf1 ip4:127.0.0.1 -all"
_dmarc.stranger.example.    TXT "v=DMARC1; p=none; rua=mailto:{PARTNER_RUA}"
reports.example.            MX  10 mx.reports.example.
mx.reports.example.         A   127.0.0.1
partner.example._report._dmarc.reports.example. TXT "v=DMARC1"
"""


@pytest.fixture
async def mx() -> AsyncIterator[FakeMx]:
    async with FakeMx() as server:
        yield server


def dns_txt(server: DnsTestServer) -> Callable[..., bytes]:
    """dkimpy's DNS hook, asking the test DNS server."""
    host, _, port = server.address.rpartition(":")

    def lookup(name: bytes, timeout: int = 5) -> bytes:
        query = dns.message.make_query(name.decode(), dns.rdatatype.TXT)
        answer = dns.query.udp(query, host, timeout=timeout, port=int(port))
        return b"".join(b"".join(rdata.strings) for rrset in answer.answer for rdata in rrset)
    return lookup


async def until(condition: Callable[[], bool], what: str, seconds: float = 60) -> None:
    """Wait for something the servers do in the background (bounded)."""
    for _ in range(int(seconds * 20)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


def _message(author: str, subject: str) -> bytes:
    return (f"From: <{author}>\r\nTo: <{USER}>\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}@test>\r\n\r\nHello.\r\n").encode()


def _traffic(port: int, signing_key: bytes) -> None:
    """The day's mail, over SMTP from 127.0.0.1."""
    signed = _message("news@sender.example", "signed one")
    signed = dkim.sign(signed, b"s1", b"sender.example", signing_key,
                       include_headers=[b"from", b"to", b"subject"]) + signed
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        for number in range(2):
            client.sendmail("news@sender.example", [USER],
                            _message("news@sender.example", f"plain {number}"))
        client.sendmail("news@sender.example", [USER], signed)
        # The author's domain, sent through someone else's envelope: DMARC fails (p=none).
        client.sendmail("x@nospf.example", [USER], _message("boss@sender.example", "spoof"))
        client.sendmail("ops@partner.example", [USER], _message("ops@partner.example", "p"))
        client.sendmail("ops@stranger.example", [USER],
                        _message("ops@stranger.example", "s"))


def report_of(transaction: Transaction) -> tuple[EmailMessage, str, bytes]:
    message = BytesParser(policy=email.policy.default).parsebytes(transaction.content)
    assert isinstance(message, EmailMessage)
    (part,) = list(message.iter_attachments())
    assert part.get_content_type() == "application/gzip"
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return message, part.get_filename() or "", gzip.decompress(payload)


async def test_a_day_of_mail_is_reported_and_a_report_reads_back(
        tmp_path: Path, server_cert: tuple[Path, Path], mx: FakeMx) -> None:
    with DnsTestServer(ZONE) as dns_server:
        config = make_config(
            tmp_path, server_cert, OUTBOUND_SMTP_PORT=mx.port,
            DNS_NAMESERVERS=dns_server.address, REPORT_ADDRESS=REPORT_ADDRESS,
            REPORT_ORG_NAME="Postroom Test", ENABLE_TLSRPT=0, ENABLE_DANE=0,
            ENABLE_MTA_STS=0, ENABLE_IMAP=0, ENABLE_POP3=0)
        ours = await asyncio.to_thread(keys.generate_key, keys_dir(config), "example.test",
                                       bits=1024)
        dns_server.add("mail._domainkey.example.test", "TXT",
                       keys.public_txt_value(ours.private_path.read_bytes()))
        theirs = await asyncio.to_thread(keys.generate_private_key, bits=1024)
        dns_server.add("s1._domainkey.sender.example", "TXT", keys.public_txt_value(theirs))
        app = AppThread(config)
        await asyncio.to_thread(app.__enter__)
        try:
            await _run(app, mx, dns_server, theirs, tmp_path)
        finally:
            await asyncio.to_thread(app.stop)


async def _run(app: AppThread, mx: FakeMx, dns_server: DnsTestServer, signing_key: bytes,
               tmp_path: Path) -> None:
    call = app.call
    for address in (USER, REPORT_ADDRESS):
        await asyncio.to_thread(app.add_account, address, "secret")
    await asyncio.to_thread(_traffic, app.port("smtp"), signing_key)
    reports = app.app.reports
    assert reports is not None and reports.recorder is not None
    await asyncio.to_thread(call, reports.recorder.flush())
    (job,) = [job for job in reports.daily.jobs if isinstance(job, DmarcReportJob)]
    today = dt.datetime.now(dt.UTC).date()
    summary = await asyncio.to_thread(call, job.run(today))
    # stranger.example's rua is in reports.example, which never agreed (§7.1).
    assert summary == "2 report(s) sent, 1 destination(s) skipped"
    await until(lambda: len(mx.transactions) >= 2, "two report mails")
    await until(lambda: not call(app.runtime.store.list_queue()), "an empty queue")
    by_rua = {t.recipients[0]: t for t in mx.transactions}
    assert set(by_rua) == {SENDER_RUA, PARTNER_RUA} and len(mx.transactions) == 2

    begin = int(dt.datetime.combine(today, dt.time(), tzinfo=dt.UTC).timestamp())
    for rua, domain in ((SENDER_RUA, "sender.example"), (PARTNER_RUA, "partner.example")):
        transaction = by_rua[rua]
        assert transaction.sender == "noreply-reports@example.test"
        assert dkim.verify(transaction.content, dnsfunc=dns_txt(dns_server))
        message, filename, xml = report_of(transaction)
        assert filename == f"example.test!{domain}!{begin}!{begin + 86399}.xml.gz"
        assert re.fullmatch(rf"Report Domain: {re.escape(domain)} Submitter: example\.test"
                            r" Report-ID: <\d{8}\.[0-9a-f]{16}>", message["Subject"])
        assert message["From"] == "noreply-reports@example.test" and message["To"] == rua
        SCHEMA.validate(xml.decode())

    _, _, xml = report_of(by_rua[SENDER_RUA])
    report = parse_feedback(xml)
    assert (report.org_name, report.policy_domain) == ("Postroom Test", "sender.example")
    rows = sorted((r.count, r.dkim, r.spf, r.disposition, r.spf_domain, r.dkim_domains)
                  for r in report.rows)
    assert rows == [
        (1, "fail", "fail", "none", "nospf.example", ""),  # the spoof: nothing aligned
        (1, "pass", "pass", "none", "sender.example", "sender.example=pass"),
        (2, "fail", "pass", "none", "sender.example", "")]
    assert all(r.source_ip == "127.0.0.1" for r in report.rows)
    assert b"<p>none</p>" in xml and b"<domain>sender.example</domain>" in xml
    _, _, partner = report_of(by_rua[PARTNER_RUA])
    assert b"<p>quarantine</p>" in partner and b"<count>1</count>" in partner

    # The report mailed back to our report address, as a reporter would send it.
    await asyncio.to_thread(_send, app.port("smtp"), by_rua[SENDER_RUA].content)
    await until(lambda: reports.intake.handled >= 1, "the report intake")
    # A hostile "report" (a gzip bomb) is delivered all the same, and skipped by the intake.
    bomb = EmailMessage()
    bomb["From"], bomb["To"], bomb["Subject"] = "x@nospf.example", REPORT_ADDRESS, "report"
    bomb.set_content("see attachment")
    bomb.add_attachment(gzip.compress(bytes(21 * 1024 * 1024)), maintype="application",
                        subtype="gzip", filename="bomb.xml.gz")
    await asyncio.to_thread(_send, app.port("smtp"), bomb.as_bytes())
    await until(lambda: reports.intake.handled >= 2, "the report intake, again")
    assert len(await asyncio.to_thread(app.inbox_messages, REPORT_ADDRESS)) == 2
    env = write_env(tmp_path / "postroom.env", {
        "DATA_DIR": tmp_path / "data", "OVERRIDE_HOSTNAME": "mail.example.test"})
    shown = await asyncio.to_thread(_cli, env, "reports", "dmarc", "--domain",
                                    "sender.example")
    assert shown.returncode == 0, shown.stderr
    lines = sorted(shown.stdout.splitlines())
    assert lines == [
        "sender.example\t127.0.0.1\tPostroom Test\t1\tnone\tfail\tfail\tFAIL",
        "sender.example\t127.0.0.1\tPostroom Test\t1\tnone\tpass\tpass\tpass",
        "sender.example\t127.0.0.1\tPostroom Test\t2\tnone\tfail\tpass\tpass"]
    nothing = await asyncio.to_thread(_cli, env, "reports", "dmarc", "--domain",
                                      "other.example")
    assert nothing.returncode == 0 and "no DMARC reports" in nothing.stderr

    # By hand: a finished day is sent once, whoever asks. (Not yesterday: the App's own
    # runner took that day when it started.)
    yesterday = (today - dt.timedelta(days=2)).isoformat()
    first = await asyncio.to_thread(_cli, env, "reports", "send", "--day", yesterday,
                                    "--job", "dmarc")
    assert first.returncode == 0, first.stderr
    assert first.stdout == f"dmarc\t{yesterday}\tsent\t0 report(s) sent, 0 destination(s)" \
                           " skipped\n"
    again = await asyncio.to_thread(_cli, env, "reports", "send", "--day", yesterday,
                                    "--job", "dmarc")
    assert again.stdout == f"dmarc\t{yesterday}\talready sent\t\n"
    not_yet = await asyncio.to_thread(_cli, env, "reports", "send", "--day",
                                      today.isoformat())
    assert not_yet.returncode == 2 and "has not ended yet" in not_yet.stderr


def _send(port: int, raw: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail("noreply-reports@example.test", [REPORT_ADDRESS], raw)


def _cli(env: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "postroom", "--config", str(env), *args],
                          capture_output=True, text=True, timeout=120)
