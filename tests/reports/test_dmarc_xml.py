"""DMARC aggregate report XML (RFC 7489 Appendix C), sans-IO: what we write validates
against the RFC's schema and reads back; reports in the forms others send (no namespace,
extra fields) read; the rua URIs and attachment kinds of reports/mailing.py and
reports/intake.py."""

from __future__ import annotations

import contextlib
import datetime as dt
from pathlib import Path

import pytest
import xmlschema
from hypothesis import given, settings
from hypothesis import strategies as st

from postroom.mailauth.dkim import DkimResult, DkimVerdict
from postroom.mailauth.dmarc import DmarcRecord, Policy, evaluate_dmarc, parse_dmarc_record
from postroom.mailauth.spf import SpfResult, SpfVerdict
from postroom.reports.dmarcrecord import DkimFact, Evaluation, evaluation_of, report_ip
from postroom.reports.dmarcxml import PolicyPublished, ReportMeta, parse_feedback, render_feedback
from postroom.reports.intake import BadReport, report_kind
from postroom.reports.mailing import MailtoUri, parse_mailto

SCHEMA = xmlschema.XMLSchema(Path(__file__).parent / "data" / "rfc7489-appendix-c.xsd")
BEGIN = dt.datetime(2026, 12, 6, tzinfo=dt.UTC)
END = BEGIN + dt.timedelta(days=1, seconds=-1)


def _evaluation(ip: str, dkim: tuple[DkimFact, ...] = (), **changes: object) -> Evaluation:
    values: dict[str, object] = dict(
        source_ip=report_ip(ip), header_from="sender.example",
        envelope_from="sender.example", disposition="none", dkim_aligned=bool(dkim),
        spf_aligned=True, reasons=(), dkim=dkim, spf_domain="sender.example",
        spf_scope="mfrom", spf_result="pass")
    values.update(changes)
    return Evaluation(**values)  # type: ignore[arg-type]


def _document(records: list[tuple[Evaluation, int]]) -> bytes:
    meta = ReportMeta("Postroom Test", "noreply-reports@example.test", "20261206.abc",
                      BEGIN, END)
    policy = PolicyPublished("sender.example", "quarantine", "quarantine", 100, "r", "s", "0")
    return render_feedback(meta, policy, records)


def test_written_report_is_valid_and_reads_back() -> None:
    records = [
        (_evaluation("192.0.2.7", (DkimFact("sender.example", "s1", "pass"),)), 3),
        (_evaluation("2001:db8::5", disposition="quarantine", spf_aligned=False,
                     spf_result="softfail", reasons=(("sampled_out", ""),
                                                     ("trusted_forwarder", "arc=pass")),
                     dkim=(DkimFact("list.example", "", "fail"),), dkim_aligned=False), 1),
        (_evaluation("::ffff:198.51.100.2", spf_scope="helo"), 2),
    ]
    document = _document(records)
    SCHEMA.validate(document.decode())
    assert document.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    report = parse_feedback(document)
    assert (report.org_name, report.report_id, report.policy_domain) == (
        "Postroom Test", "20261206.abc", "sender.example")
    assert (report.begin, report.end) == (BEGIN, END)
    rows = [(r.source_ip, r.count, r.disposition, r.dkim, r.spf, r.dkim_domains)
            for r in report.rows]
    assert rows == [
        ("192.0.2.7", 3, "none", "pass", "pass", "sender.example=pass"),
        ("2001:0db8:0000:0000:0000:0000:0000:0005", 1, "quarantine", "fail", "fail",
         "list.example=fail"),
        ("198.51.100.2", 2, "none", "fail", "pass", "")]


def test_an_invalid_value_fails_the_schema() -> None:
    """The schema check is not a formality: a disposition outside the enumeration fails."""
    document = _document([(_evaluation("192.0.2.7", disposition="deliver"), 1)])
    with pytest.raises(xmlschema.XMLSchemaValidationError):
        SCHEMA.validate(document.decode())


def test_evaluation_of_a_dmarc_result() -> None:
    record = parse_dmarc_record("v=DMARC1; p=reject; pct=0; rua=mailto:d@sender.example")
    spf = SpfResult(SpfVerdict.SOFTFAIL, "bounces.example", "", "smtp.mailfrom",
                    "x@bounces.example")
    dkim = [DkimResult(DkimVerdict.FAIL, "Sender.Example", "s1", "body hash")]
    result = evaluate_dmarc("sender.example", record, "sender.example", spf, dkim,
                            rng=lambda: 0.5)
    assert result.disposition is Policy.QUARANTINE  # pct=0: sampled out, one step down
    evaluation = evaluation_of("192.0.2.9", spf, dkim, result)
    assert evaluation.reasons == (("sampled_out", ""),)
    assert evaluation.dkim == (DkimFact("sender.example", "s1", "fail"),)
    assert (evaluation.envelope_from, evaluation.spf_result, evaluation.spf_scope) == (
        "bounces.example", "softfail", "mfrom")
    assert Evaluation.from_json(evaluation.to_json()) == evaluation
    assert isinstance(record, DmarcRecord)


GOOGLE_STYLE = b"""<?xml version="1.0" encoding="UTF-8" ?>
<feedback>
  <report_metadata>
    <org_name>google.com</org_name>
    <email>noreply-dmarc-support@google.com</email>
    <extra_contact_info>https://support.google.com/a/answer/2466580</extra_contact_info>
    <report_id>1234567890</report_id>
    <date_range><begin>1765065600</begin><end>1765151999</end></date_range>
  </report_metadata>
  <policy_published>
    <domain>Example.Test</domain><adkim>r</adkim><aspf>r</aspf><p>none</p><sp>none</sp>
    <pct>100</pct><np>none</np>
  </policy_published>
  <record>
    <row>
      <source_ip>203.0.113.5</source_ip><count>12</count>
      <policy_evaluated><disposition>none</disposition><dkim>pass</dkim><spf>fail</spf>
      </policy_evaluated>
    </row>
    <identifiers><header_from>example.test</header_from></identifiers>
    <auth_results>
      <dkim><domain>example.test</domain><result>pass</result><selector>mail</selector></dkim>
      <spf><domain>bounce.example.test</domain><result>fail</result></spf>
    </auth_results>
  </record>
</feedback>
"""


def test_a_report_without_namespace_reads() -> None:
    report = parse_feedback(GOOGLE_STYLE)
    assert (report.org_name, report.policy_domain, report.report_id) == (
        "google.com", "example.test", "1234567890")
    (row,) = report.rows
    assert (row.source_ip, row.count, row.dkim, row.spf, row.spf_domain) == (
        "203.0.113.5", 12, "pass", "fail", "bounce.example.test")


@pytest.mark.parametrize(("document", "why"), [
    (b"<feedback/>", "no <report_metadata>"),
    (b"<html><body>hi</body></html>", "not <feedback>"),
    (GOOGLE_STYLE.replace(b"<count>12</count>", b"<count>-3</count>"), "not a number"),
    (GOOGLE_STYLE.replace(b"<begin>1765065600</begin>", b"<begin>yesterday</begin>"),
     "seconds since the epoch"),
    (b"\x00\x01garbage", "not a readable XML report"),
    (GOOGLE_STYLE[:300], "not a readable XML report"),
])
def test_broken_reports_are_refused(document: bytes, why: str) -> None:
    with pytest.raises(BadReport, match=why):
        parse_feedback(document)


@pytest.mark.parametrize(("uri", "parsed"), [
    ("mailto:dmarc@example.org", MailtoUri("dmarc@example.org")),
    ("mailto:Dmarc@Example.org!10m", MailtoUri("dmarc@example.org", 10 * 1024 * 1024)),
    (" mailto:d@example.org!500 ", MailtoUri("d@example.org", 500)),
    ("mailto:d%40x@example.org", MailtoUri("d@x@example.org")),
    ("https://example.org/report", None),
    ("mailto:nobody", None),
    ("mailto:a@example.org,b@example.org", None),
    ("mailto:d@example.org!10x", None),
    ("mailto:d@example.org!k", None),
])
def test_mailto_uris(uri: str, parsed: MailtoUri | None) -> None:
    assert parse_mailto(uri) == parsed


@pytest.mark.parametrize(("content_type", "filename", "kind"), [
    ("application/gzip", "google.com!example.test!1!2.xml.gz", "dmarc"),
    ("application/zip", "a!b!1!2.zip", "dmarc"),
    ("text/xml", "", "dmarc"),
    ("application/octet-stream", "report.xml.gz", "dmarc"),
    ("application/octet-stream", "photo.jpg", None),
    ("application/tlsrpt+gzip", "x.json.gz", "tlsrpt"),
    ("application/gzip", "x!y!1!2!id.json.gz", "tlsrpt"),
    ("image/png", "a.png", None),
])
def test_report_kinds(content_type: str, filename: str, kind: str | None) -> None:
    assert report_kind(content_type, filename) == kind


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000) | st.text(max_size=300).map(str.encode)
       | st.sampled_from([GOOGLE_STYLE]).flatmap(
           lambda doc: st.integers(0, len(doc)).map(lambda cut: doc[:cut])))
def test_any_bytes_read_as_a_report_or_bad_report(data: bytes) -> None:
    """Fuzz: the reader answers with a report or BadReport, nothing else."""
    with contextlib.suppress(BadReport):
        parse_feedback(data)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_any_uri_parses_or_is_refused(text: str) -> None:
    parsed = parse_mailto("mailto:" + text)
    assert parsed is None or ("@" in parsed.address and parsed.max_size >= 0)
