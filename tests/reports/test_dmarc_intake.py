"""The report intake against hostile input (reports/intake.py, reports/dmarcxml.py): zip
and gzip bombs stop at the cap, entity expansion and external entities are refused, deep
nesting, too many members, oversize and garbage are skipped with a log line — and a good
report in the same mail is still stored. Runs over a real store (tests/conftest.py)."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import logging
import zipfile
import zlib
from email.message import EmailMessage

import pytest

from postroom.clock import ManualClock
from postroom.reports import intake
from postroom.reports.dmarcintake import DmarcReportParser, recent_sources
from postroom.reports.dmarcxml import parse_feedback
from postroom.reports.intake import BadReport, ReportIntake, decompress, find_attachments
from postroom.runtime import Runtime

NOW = dt.datetime(2026, 12, 7, 8, 0, tzinfo=dt.UTC)

REPORT = b"""<?xml version="1.0"?>
<feedback xmlns="http://dmarc.org/dmarc-xml/0.1"><version>1.0</version>
<report_metadata><org_name>Reporter</org_name><email>r@reporter.example</email>
<report_id>id-1</report_id><date_range><begin>1796515200</begin><end>1796601599</end>
</date_range></report_metadata>
<policy_published><domain>example.test</domain><p>none</p><sp>none</sp><pct>100</pct>
<fo>0</fo></policy_published>
<record><row><source_ip>192.0.2.1</source_ip><count>4</count><policy_evaluated>
<disposition>none</disposition><dkim>fail</dkim><spf>fail</spf></policy_evaluated></row>
<identifiers><header_from>example.test</header_from></identifiers><auth_results><spf>
<domain>example.test</domain><result>fail</result></spf></auth_results></record>
</feedback>
"""

LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE feedback [
 <!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">
 <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
 <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
 <!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">
]>
<feedback><report_metadata><org_name>&d;&d;&d;&d;</org_name></report_metadata></feedback>
"""

EXTERNAL = b"""<?xml version="1.0"?>
<!DOCTYPE feedback [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<feedback><report_metadata><org_name>&secret;</org_name></report_metadata></feedback>
"""


def _zip(*members: tuple[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


def _zeros_gzip(size: int) -> bytes:
    """A gzip of `size` zero bytes, made in pieces (the test stays small in memory)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(1024 * 1024)
    parts = [compressor.compress(chunk) for _ in range(size // len(chunk))]
    return b"".join([*parts, compressor.flush()])


def test_gzip_bomb_stops_at_the_cap() -> None:
    bomb = _zeros_gzip(intake.MAX_UNCOMPRESSED + 1024 * 1024)
    assert len(bomb) < 100_000
    with pytest.raises(BadReport, match="decompresses to over"):
        decompress(bomb)


def test_zip_bomb_and_crowded_zip() -> None:
    with pytest.raises(BadReport, match="decompresses to over"):
        decompress(_zip(("r.xml", bytes(intake.MAX_UNCOMPRESSED + 1))))
    crowded = _zip(*((f"r{i}.xml", REPORT) for i in range(intake.MAX_ZIP_MEMBERS + 1)))
    with pytest.raises(BadReport, match="members"):
        decompress(crowded)
    assert decompress(_zip(("report.xml", REPORT))) == REPORT


@pytest.mark.parametrize(("data", "why"), [
    (b"\x1f\x8bnot really gzip", "broken gzip"),
    (gzip.compress(REPORT)[:-20], "truncated gzip"),
    (b"PK\x03\x04garbage", "broken zip"),
    (bytes(intake.MAX_COMPRESSED + 1), "compressed report over"),
])
def test_broken_archives(data: bytes, why: str) -> None:
    with pytest.raises(BadReport, match=why):
        decompress(data)


@pytest.mark.parametrize(("document", "why"), [
    (LAUGHS, "not a readable XML report"),
    (EXTERNAL, "not a readable XML report"),
    (b"<feedback>" + b"<a>" * 50 + b"</a>" * 50 + b"</feedback>", "nested deeper"),
])
def test_hostile_xml(document: bytes, why: str) -> None:
    with pytest.raises(BadReport, match=why):
        parse_feedback(document)


def _mail(*attachments: tuple[bytes, str, str]) -> bytes:
    message = EmailMessage()
    message["From"] = "r@reporter.example"
    message["To"] = "postmaster@example.test"
    message["Subject"] = "Report Domain: example.test"
    message.set_content("reports attached")
    for data, content_type, filename in attachments:
        maintype, _, subtype = content_type.partition("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return message.as_bytes()


async def test_a_mail_of_bad_and_good_reports(runtime: Runtime,
                                              caplog: pytest.LogCaptureFixture) -> None:
    reader = ReportIntake(runtime.config, runtime.blobs, ManualClock(NOW))
    reader.register(DmarcReportParser(runtime.store))
    raw = _mail((_zeros_gzip(intake.MAX_UNCOMPRESSED + 1024 * 1024), "application/gzip",
                 "bomb.xml.gz"),
                (LAUGHS, "text/xml", "laughs.xml"),
                (b"\x00garbage" * 10, "application/zip", "junk.zip"),
                (b"{}", "application/tlsrpt+json", "tls.json"),  # no TLS-RPT parser here
                (gzip.compress(REPORT), "application/gzip",
                 "reporter.example!example.test!1796515200!1796601599.xml.gz"))
    with caplog.at_level(logging.WARNING, logger="postroom.reports.intake"):
        lines = await reader.read_message(raw)
    assert lines == ["stored: Reporter about example.test, 1 row(s), id id-1"]
    skipped = " ".join(record.getMessage() for record in caplog.records)
    assert "bomb.xml.gz" in skipped and "laughs.xml" in skipped and "junk.zip" in skipped
    # The same report again (a resend) is not counted twice.
    assert await reader.read_message(raw) == [
        "already stored: Reporter about example.test, 1 row(s), id id-1"]
    (source,) = await recent_sources(runtime.store, NOW, 7, "example.test")
    assert (source.source_ip, source.messages, source.passes) == ("192.0.2.1", 4, False)


def test_offer_only_takes_report_addresses(runtime: Runtime) -> None:
    reader = ReportIntake(runtime.config, runtime.blobs, ManualClock(NOW))
    assert not reader.offer(["postmaster@example.test"], "blob", 10)  # no parser yet
    reader.register(DmarcReportParser(runtime.store))
    assert not reader.offer(["user@example.test"], "blob", 10)
    assert not reader.offer(["postmaster@example.test"], "blob", intake.MAX_MESSAGE_SIZE + 1)
    assert reader.offer(["user@example.test", "Postmaster@example.test"], "blob", 10)


def test_message_parts_are_capped() -> None:
    many = _mail(*((gzip.compress(REPORT), "application/gzip", f"r{i}.xml.gz")
                   for i in range(intake.MAX_PARTS + 5)))
    assert len(find_attachments(many)) == intake.MAX_REPORTS_PER_MESSAGE
