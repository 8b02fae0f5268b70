"""TLS-RPT (RFC 8460) without the network: the sink counts outcomes per UTC day and key
within its cap and writes them to the store; the report built from them is valid against
the §4.4 schema (tests/reports/data/tlsrpt-report.schema.json); the `_smtp._tls` record,
the file name; and received reports read as hostile input through the report intake."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import logging
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postroom.clock import ManualClock
from postroom.errors import BadSyntax
from postroom.outbound.tlsresults import TlsOutcome
from postroom.reports.intake import ReportIntake
from postroom.reports.tlsrpt import TlsOutcomeRecorder, TlsReportParser
from postroom.reports.tlsrptjson import (
    MAX_FAILURE_DETAILS,
    MEDIA_GZIP,
    Reporter,
    build_report,
    load_report,
    parse_report,
    parse_rua,
    render_report,
    report_filename,
)
from postroom.reports.tlsrptsend import split_rua
from postroom.runtime import Runtime
from postroom.store.tlsreports_api import TlsOutcomeCount

SCHEMA = json.loads((Path(__file__).parent / "data" / "tlsrpt-report.schema.json").read_text())
DAY = dt.date(2026, 12, 6)
MORNING = dt.datetime(2026, 12, 6, 9, 0, tzinfo=dt.UTC)
STS = ("version: STSv1", "mode: enforce", "mx: mx.example.net", "mx: *.backup.example.net",
       "max_age: 86400")
REPORTER = Reporter("Example Org", "noreply-reports@example.test", "mail.example.test")


def _outcome(domain: str = "example.net", failure: str | None = None,
             ip: str = "192.0.2.10") -> TlsOutcome:
    return TlsOutcome(domain, "sts", STS, "mx.example.net", ip, failure,
                      "certificate expired" if failure else "")


def validate(report: dict[str, Any]) -> None:
    jsonschema.validate(report, SCHEMA, format_checker=jsonschema.FormatChecker())


async def test_the_sink_counts_per_day_and_key_and_writes_in_batches(runtime: Runtime) -> None:
    clock = ManualClock(MORNING)
    sink = TlsOutcomeRecorder(runtime.store, clock)
    for _ in range(3):
        sink.record(_outcome())
    sink.record(_outcome(failure="certificate-expired"))
    sink.record(_outcome(failure="certificate-expired"))
    sink.record(_outcome("EXAMPLE.NET.", ip="192.0.2.11"))  # one domain, however spelt
    clock.set(MORNING + dt.timedelta(days=1))
    sink.record(_outcome())  # the next UTC day
    assert sink.pending == 4
    assert await sink.flush() == 4
    assert sink.pending == 0
    rows = await runtime.store.tls_outcomes(DAY)
    assert sorted((row.receiving_ip, row.result, row.count) for row in rows) == [
        ("192.0.2.10", "", 3), ("192.0.2.10", "certificate-expired", 2), ("192.0.2.11", "", 1)]
    assert {row.policy_domain for row in rows} == {"example.net"}
    assert rows[0].policy_strings == STS
    sink.record(_outcome())  # a second batch adds to the stored counts
    await sink.stop()
    today = await runtime.store.tls_outcomes(DAY + dt.timedelta(days=1))
    assert [row.count for row in today] == [2]


async def test_the_sink_holds_at_most_max_keys(runtime: Runtime,
                                               caplog: pytest.LogCaptureFixture) -> None:
    sink = TlsOutcomeRecorder(runtime.store, ManualClock(MORNING), max_keys=3)
    for number in range(5):  # an attacker's many recipient domains
        sink.record(_outcome(f"d{number}.example"))
    sink.record(_outcome("d0.example"))  # a key it holds still counts
    assert sink.pending == 3
    with caplog.at_level(logging.WARNING):
        assert await sink.flush() == 3
    assert "2 session outcomes not counted" in caplog.text
    counts = {row.policy_domain: row.count for row in await runtime.store.tls_outcomes(DAY)}
    assert counts == {"d0.example": 2, "d1.example": 1, "d2.example": 1}


async def test_record_never_raises_and_bounds_every_field(runtime: Runtime) -> None:
    sink = TlsOutcomeRecorder(runtime.store, ManualClock(MORNING))
    sink.record(TlsOutcome("x" * 100_000, "sts", ("y" * 100_000,) * 1000, "m" * 5000, "1",
                           "z" * 5000, "w" * 100_000))
    sink.record(None)  # type: ignore[arg-type]  # a caller's bug is logged, not raised
    await sink.flush()
    (row,) = await runtime.store.tls_outcomes(DAY)
    assert len(row.policy_domain) == 255 and len(row.mx_host) == 255
    assert len(row.policy_strings) == 50 and len(row.policy_strings[0]) == 1000
    assert len(row.detail) == 200


def _counts(domain: str = "example.net") -> list[TlsOutcomeCount]:
    def count(policy_type: str, strings: tuple[str, ...], mx: str, ip: str, result: str,
              number: int) -> TlsOutcomeCount:
        return TlsOutcomeCount(DAY, domain, policy_type, strings, mx, ip, result,
                               "reason" if result else "", number)
    tlsa = ("3 1 1 " + "ab" * 32,)
    return [count("sts", STS, "mx.example.net", "192.0.2.10", "", 40),
            count("sts", STS, "mx.example.net", "192.0.2.10", "certificate-expired", 3),
            count("sts", STS, "b.backup.example.net", "192.0.2.20", "starttls-not-supported", 2),
            count("tlsa", tlsa, "dane.example.net", "2001:db8::25", "", 7),
            count("tlsa", tlsa, "dane.example.net", "2001:db8::25", "tlsa-invalid", 1),
            count("no-policy-found", (), "plain.example.net", "192.0.2.30", "", 5)]


def test_the_report_follows_rfc_8460_section_4_4() -> None:
    report = build_report(REPORTER, "example.net", DAY, _counts(), "r-1@mail.example.test")
    validate(report)
    assert report["date-range"] == {"start-datetime": "2026-12-06T00:00:00Z",
                                    "end-datetime": "2026-12-06T23:59:59Z"}
    assert report["organization-name"] == "Example Org"
    assert report["contact-info"] == "noreply-reports@example.test"
    by_type = {entry["policy"]["policy-type"]: entry for entry in report["policies"]}
    sts = by_type["sts"]
    assert sts["policy"]["policy-string"] == list(STS)
    assert sts["policy"]["mx-host"] == ["mx.example.net", "*.backup.example.net"]
    assert sts["summary"] == {"total-successful-session-count": 40,
                              "total-failure-session-count": 5}
    assert sts["failure-details"][0] == {
        "result-type": "certificate-expired", "failed-session-count": 3,
        "receiving-mx-hostname": "mx.example.net", "receiving-ip": "192.0.2.10",
        "failure-reason-code": "reason"}
    assert by_type["tlsa"]["policy"]["mx-host"] == ["dane.example.net"]
    assert by_type["tlsa"]["summary"]["total-failure-session-count"] == 1
    assert "policy-string" not in by_type["no-policy-found"]["policy"]
    assert "failure-details" not in by_type["no-policy-found"]


def test_failure_details_are_cut_but_the_summary_counts_every_session() -> None:
    counts = [TlsOutcomeCount(DAY, "example.net", "no-policy-found", (), f"mx{n}.example.net",
                              "192.0.2.1", "starttls-not-supported", "", 1)
              for n in range(MAX_FAILURE_DETAILS + 5)]
    report = build_report(REPORTER, "example.net", DAY, counts, "r-2")
    validate(report)
    (entry,) = report["policies"]
    assert len(entry["failure-details"]) == MAX_FAILURE_DETAILS
    assert entry["summary"]["total-failure-session-count"] == MAX_FAILURE_DETAILS + 5


def test_a_built_report_parses_back() -> None:
    report = build_report(REPORTER, "example.net", DAY, _counts(), "r-3")
    received = dt.datetime(2026, 12, 7, 1, 0, tzinfo=dt.UTC)
    parsed = parse_report(load_report(render_report(report), MEDIA_GZIP), received)
    sts = next(policy for policy in parsed if policy.policy_type == "sts")
    assert (sts.organization, sts.report_id, sts.policy_domain) == ("Example Org", "r-3",
                                                                    "example.net")
    assert (sts.successful, sts.failed) == (40, 5)
    assert sts.failures == (("certificate-expired", 3), ("starttls-not-supported", 2))
    assert sts.begin == dt.datetime(2026, 12, 6, tzinfo=dt.UTC)


@pytest.mark.parametrize(("records", "expected"), [
    (["v=TLSRPTv1; rua=mailto:tls@example.net"], ["mailto:tls@example.net"]),
    (["v=TLSRPTv1;rua=mailto:a@example.net,https://r.example.net/v1"],
     ["mailto:a@example.net", "https://r.example.net/v1"]),
    (["v=spf1 -all", "v=TLSRPTv1; rua=mailto:a@example.net"], ["mailto:a@example.net"]),
    (["v=TLSRPTv1; rua=mailto:a@example.net", "v=TLSRPTv1; rua=mailto:b@example.net"], []),
    (["v=TLSRPTv2; rua=mailto:a@example.net"], []),
    (["v=TLSRPTv1; rua=ftp://x.example.net, http://x.example.net"], []),
    (["v=TLSRPTv1; rua=" + ",".join(f"mailto:r{n}@example.net" for n in range(50))],
     [f"mailto:r{n}@example.net" for n in range(5)]),
    ([], []),
])
def test_the_smtp_tls_record(records: list[str], expected: list[str]) -> None:
    assert parse_rua(records) == expected


def test_rua_destinations() -> None:
    destinations = split_rua(["mailto:tls%2Brpt@example.net?subject=x", "mailto:bad address",
                              "https://r.example.net:8443/report?k=1", "https:///nohost"])
    assert destinations.mailboxes == ("tls+rpt@example.net",)
    assert destinations.urls == ("https://r.example.net:8443/report?k=1",)


def test_the_file_name_follows_section_5_1() -> None:
    assert report_filename("mail.example.test", "example.net", DAY, "abc") == (
        "mail.example.test!example.net!1796515200!1796601599!abc.json.gz")


# Received reports: hostile input, through the report intake as delivery hands it over.

def _mail(*attachments: tuple[bytes, str, str]) -> bytes:
    message = EmailMessage()
    message["From"] = "reports@sender.example"
    message["To"] = "postmaster@example.test"
    message["Subject"] = "Report Domain: example.test"
    message.set_content("reports")
    for data, media, filename in attachments:
        maintype, _, subtype = media.partition("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return message.as_bytes()


def _valid(report_id: str = "r-9", /, **changes: Any) -> dict[str, Any]:
    report = build_report(REPORTER, "example.test", DAY, _counts("example.test"), report_id)
    report.update(changes)
    return report


def _json(report: Any) -> bytes:
    return json.dumps(report).encode()


async def _intake(runtime: Runtime) -> ReportIntake:
    intake = ReportIntake(runtime.config, runtime.blobs, ManualClock(MORNING))
    intake.register(TlsReportParser(runtime.store))
    return intake


async def test_received_reports_are_stored_once(runtime: Runtime) -> None:
    intake = await _intake(runtime)
    raw = _mail((render_report(_valid()), MEDIA_GZIP, "a!example.test!1!2.json.gz"),
                (_json(_valid("r-10")), "application/tlsrpt+json", "b.json"))
    lines = await intake.read_message(raw)
    assert len(lines) == 2 and "52 sessions succeeded, 6 failed" in lines[0]
    assert "stored already" in (await intake.read_message(raw))[0]
    stored = await runtime.store.received_tls_reports(MORNING - dt.timedelta(days=7))
    assert {policy.report_id for policy in stored} == {"r-9", "r-10"}
    assert len(stored) == 6


HOSTILE: list[tuple[str, bytes, str]] = [
    ("gzip bomb", gzip.compress(b" " * 64_000_000), MEDIA_GZIP),
    ("a big plain report", b" " * 5_000_000 + _json(_valid()), "application/tlsrpt+json"),
    ("deep JSON", b"[" * 200_000 + b"]" * 200_000, "application/tlsrpt+json"),
    ("deep JSON inside the report",
     _json(_valid(**{"contact-info": "x"}))[:-1] + b',"x":' + b"[" * 50 + b"]" * 50 + b"}",
     "application/tlsrpt+json"),
    ("many policies", _json(_valid(policies=_valid()["policies"] * 40)),
     "application/tlsrpt+json"),
    ("many failure details", _json(_valid(policies=[{
        "policy": {"policy-type": "sts", "policy-domain": "example.test"},
        "summary": {"total-successful-session-count": 0, "total-failure-session-count": 1},
        "failure-details": [{"result-type": "x", "failed-session-count": 1}] * 1001}])),
     "application/tlsrpt+json"),
    ("garbage", bytes(range(256)) * 100, "application/tlsrpt+json"),
    ("broken gzip", b"\x1f\x8b\x08\x00garbage", MEDIA_GZIP),
    ("a JSON array", b"[1, 2, 3]", "application/tlsrpt+json"),
    ("no policies", _json(_valid(policies=[])), "application/tlsrpt+json"),
    ("a negative count", _json(_valid(policies=[{
        "policy": {"policy-type": "sts", "policy-domain": "example.test"},
        "summary": {"total-successful-session-count": -1, "total-failure-session-count": 0}}])),
     "application/tlsrpt+json"),
    ("a count past 2**53", _json(_valid(policies=[{
        "policy": {"policy-type": "sts", "policy-domain": "example.test"},
        "summary": {"total-successful-session-count": 2**64,
                    "total-failure-session-count": 0}}])), "application/tlsrpt+json"),
    ("a boolean count", _json(_valid(policies=[{
        "policy": {"policy-type": "sts", "policy-domain": "example.test"},
        "summary": {"total-successful-session-count": True,
                    "total-failure-session-count": 0}}])), "application/tlsrpt+json"),
    ("an unknown policy type", _json(_valid(policies=[{
        "policy": {"policy-type": "magic", "policy-domain": "example.test"},
        "summary": {"total-successful-session-count": 1, "total-failure-session-count": 0}}])),
     "application/tlsrpt+json"),
    ("a long organization", _json(_valid(**{"organization-name": "o" * 5000})),
     "application/tlsrpt+json"),
    ("a bad date", _json(_valid(**{"date-range": {"start-datetime": "yesterday",
                                                  "end-datetime": "today"}})),
     "application/tlsrpt+json"),
    ("no report-id", _json({k: v for k, v in _valid().items() if k != "report-id"}),
     "application/tlsrpt+json"),
    ("huge digits", b'{"organization-name": ' + b"9" * 100_000 + b"}",
     "application/tlsrpt+json"),
]


@pytest.mark.parametrize(("name", "data", "media"), HOSTILE, ids=[h[0] for h in HOSTILE])
async def test_hostile_reports_are_skipped(runtime: Runtime, name: str, data: bytes,
                                           media: str, caplog: pytest.LogCaptureFixture) -> None:
    intake = await _intake(runtime)
    good = (_json(_valid("after")), "application/tlsrpt+json", "good.json")
    with caplog.at_level(logging.WARNING):
        lines = await intake.read_message(_mail((data, media, "bad.json.gz"), good))
    assert len(lines) == 1  # the bad one skipped, the good one after it still read
    assert "skipped" in caplog.text
    stored = await runtime.store.received_tls_reports(MORNING - dt.timedelta(days=7))
    assert {policy.report_id for policy in stored} == {"after"}


def test_the_reader_refuses_what_it_cannot_bound() -> None:
    with pytest.raises(BadSyntax, match="inflates past"):
        load_report(gzip.compress(b"{" + b" " * 5_000_000 + b"}"), MEDIA_GZIP)
    with pytest.raises(BadSyntax, match="deeper"):
        load_report(b'{"a":' * 17 + b"1" + b"}" * 17, "application/tlsrpt+json")
    assert load_report(b'{"a":"[[[[[[[[[[[[[[[[[[[[[[[[[["}', "application/tlsrpt+json")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30)
report_like = st.fixed_dictionaries(
    {"organization-name": st.text(), "report-id": st.text(),
     "date-range": st.fixed_dictionaries({"start-datetime": st.text(),
                                          "end-datetime": st.text()}),
     "policies": st.lists(st.fixed_dictionaries({
         "policy": st.dictionaries(st.sampled_from(["policy-type", "policy-domain"]),
                                   st.sampled_from(["sts", "tlsa", "x"]) | json_values),
         "summary": st.dictionaries(st.sampled_from([
             "total-successful-session-count", "total-failure-session-count"]), json_values),
         "failure-details": json_values}), max_size=3)})


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000) | json_values.map(lambda v: json.dumps(v).encode())
       | report_like.map(lambda v: json.dumps(v).encode()))
def test_any_bytes_parse_or_are_refused(data: bytes) -> None:
    try:
        policies = parse_report(load_report(data, "application/tlsrpt+json"), MORNING)
    except BadSyntax:
        return
    assert policies and all(policy.policy_type in {"sts", "tlsa", "no-policy-found"}
                            for policy in policies)


@given(st.lists(st.text(max_size=300), max_size=4))
def test_any_txt_answer_gives_at_most_five_uris(records: list[str]) -> None:
    uris = parse_rua(records)
    assert len(uris) <= 5
    assert all(uri.lower().startswith(("mailto:", "https://")) for uri in uris)


async def test_the_sink_stores_at_most_max_day_keys_a_day(runtime: Runtime) -> None:
    clock = ManualClock(MORNING)
    sink = TlsOutcomeRecorder(runtime.store, clock, max_day_keys=2)
    for number in range(3):  # three flushes, a new domain each time
        sink.record(_outcome(f"d{number}.example"))
        sink.record(_outcome("d0.example"))  # a key the day has: still counted
        await sink.flush()
    counts = {row.policy_domain: row.count for row in await runtime.store.tls_outcomes(DAY)}
    assert counts == {"d0.example": 4, "d1.example": 1}
    clock.set(MORNING + dt.timedelta(days=1))  # the next day has room again
    sink.record(_outcome("d2.example"))
    await sink.flush()
    assert len(await runtime.store.tls_outcomes(DAY + dt.timedelta(days=1))) == 1
