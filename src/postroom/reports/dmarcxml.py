"""The DMARC aggregate report format (RFC 7489 Appendix C): writing the reports we send
and reading the ones others send us. Sans-IO.

Owns the XML: `render_feedback` writes <feedback> in the schema's namespace and element
order (version, report_metadata, policy_published, record+; each record row,
identifiers, auth_results with at least one spf); `parse_feedback` reads a report with
defusedxml (no DTDs, no entity expansion, no external references), with or without the
namespace, as `ReceivedDmarcReport`.

Invariants: reading refuses (BadReport) a document deeper than `MAX_DEPTH`, with more
than `MAX_RECORDS` records or `MAX_DKIM` DKIM results per record, a count that is not a
non-negative integer, or a date range that is not two epoch integers; strings are cut to
`MAX_TEXT` characters. The size cap is the intake's (reports/intake.py).
"""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from postroom.reports.dmarcrecord import Evaluation
from postroom.reports.intake import BadReport
from postroom.store.dmarcreports_api import ReceivedDmarcReport, ReceivedDmarcRow

NAMESPACE = "http://dmarc.org/dmarc-xml/0.1"
MAX_DEPTH = 12
MAX_RECORDS = 10_000
MAX_DKIM = 10
MAX_TEXT = 255


@dataclass(frozen=True, slots=True)
class ReportMeta:
    org_name: str
    email: str
    report_id: str
    begin: dt.datetime
    end: dt.datetime
    extra_contact_info: str = ""


@dataclass(frozen=True, slots=True)
class PolicyPublished:
    domain: str
    p: str
    sp: str
    pct: int
    adkim: str
    aspf: str
    fo: str


def render_feedback(meta: ReportMeta, policy: PolicyPublished,
                    records: Sequence[tuple[Evaluation, int]]) -> bytes:
    """The report's XML document (UTF-8, with declaration)."""
    root = ET.Element("feedback", xmlns=NAMESPACE)
    _text(root, "version", "1.0")
    metadata = ET.SubElement(root, "report_metadata")
    _text(metadata, "org_name", meta.org_name)
    _text(metadata, "email", meta.email)
    if meta.extra_contact_info:
        _text(metadata, "extra_contact_info", meta.extra_contact_info)
    _text(metadata, "report_id", meta.report_id)
    date_range = ET.SubElement(metadata, "date_range")
    _text(date_range, "begin", str(int(meta.begin.timestamp())))
    _text(date_range, "end", str(int(meta.end.timestamp())))
    published = ET.SubElement(root, "policy_published")
    for name in ("domain", "adkim", "aspf", "p", "sp"):
        _text(published, name, getattr(policy, name))
    _text(published, "pct", str(policy.pct))
    _text(published, "fo", policy.fo)
    for evaluation, count in records:
        _render_record(ET.SubElement(root, "record"), evaluation, count)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _render_record(record: ET.Element, evaluation: Evaluation, count: int) -> None:
    row = ET.SubElement(record, "row")
    _text(row, "source_ip", evaluation.source_ip)
    _text(row, "count", str(count))
    evaluated = ET.SubElement(row, "policy_evaluated")
    _text(evaluated, "disposition", evaluation.disposition)
    _text(evaluated, "dkim", "pass" if evaluation.dkim_aligned else "fail")
    _text(evaluated, "spf", "pass" if evaluation.spf_aligned else "fail")
    for kind, comment in evaluation.reasons:
        reason = ET.SubElement(evaluated, "reason")
        _text(reason, "type", kind)
        if comment:
            _text(reason, "comment", comment)
    identifiers = ET.SubElement(record, "identifiers")
    _text(identifiers, "envelope_from", evaluation.envelope_from)
    _text(identifiers, "header_from", evaluation.header_from)
    results = ET.SubElement(record, "auth_results")
    for signature in evaluation.dkim:
        dkim = ET.SubElement(results, "dkim")
        _text(dkim, "domain", signature.domain)
        if signature.selector:
            _text(dkim, "selector", signature.selector)
        _text(dkim, "result", signature.result)
    spf = ET.SubElement(results, "spf")
    _text(spf, "domain", evaluation.spf_domain)
    _text(spf, "scope", evaluation.spf_scope)
    _text(spf, "result", evaluation.spf_result)


def _text(parent: ET.Element, name: str, value: str) -> None:
    ET.SubElement(parent, name).text = value


# -- reading ----------------------------------------------------------------------------

def parse_feedback(data: bytes) -> ReceivedDmarcReport:
    """A received aggregate report; BadReport when it is not one or breaks a limit."""
    try:
        root = SafeET.fromstring(data, forbid_dtd=True)
    except (DefusedXmlException, ET.ParseError, ValueError) as error:
        raise BadReport(f"not a readable XML report: {error}") from None
    _strip_namespaces(root)
    if root.tag != "feedback":
        raise BadReport(f"root element is <{root.tag[:40]}>, not <feedback>")
    metadata = _child(root, "report_metadata")
    date_range = _child(metadata, "date_range")
    records = root.findall("record")
    if len(records) > MAX_RECORDS:
        raise BadReport(f"over {MAX_RECORDS} records")
    return ReceivedDmarcReport(
        org_name=_value(metadata, "org_name"), email=_value(metadata, "email", ""),
        report_id=_value(metadata, "report_id"),
        policy_domain=_value(_child(root, "policy_published"), "domain").lower(),
        begin=_epoch(_value(date_range, "begin")), end=_epoch(_value(date_range, "end")),
        rows=tuple(_parse_record(record) for record in records))


def _strip_namespaces(root: ET.Element) -> None:
    """Tags without `{namespace}`, checking the depth on the way (one walk)."""
    stack = [(root, 1)]
    while stack:
        element, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise BadReport(f"nested deeper than {MAX_DEPTH} elements")
        if not isinstance(element.tag, str):
            raise BadReport("unexpected XML node")
        element.tag = element.tag.rpartition("}")[2]
        stack.extend((child, depth + 1) for child in element)


def _parse_record(record: ET.Element) -> ReceivedDmarcRow:
    row = _child(record, "row")
    evaluated = _child(row, "policy_evaluated")
    identifiers = _child(record, "identifiers")
    results = _child(record, "auth_results")
    dkim = results.findall("dkim")
    if len(dkim) > MAX_DKIM:
        raise BadReport(f"over {MAX_DKIM} DKIM results in a record")
    spf = results.find("spf")
    return ReceivedDmarcRow(
        source_ip=_value(row, "source_ip"), count=_count(_value(row, "count")),
        disposition=_value(evaluated, "disposition", "none"),
        dkim=_value(evaluated, "dkim", "fail"), spf=_value(evaluated, "spf", "fail"),
        header_from=_value(identifiers, "header_from", "").lower(),
        dkim_domains=",".join(f"{_value(d, 'domain', '')}={_value(d, 'result', '')}"
                              for d in dkim)[:MAX_TEXT * 4],
        spf_domain=_value(spf, "domain", "") if spf is not None else "",
        spf_result=_value(spf, "result", "") if spf is not None else "")


def _child(parent: ET.Element, name: str) -> ET.Element:
    found = parent.find(name)
    if found is None:
        raise BadReport(f"<{parent.tag}> has no <{name}>")
    return found


def _value(parent: ET.Element, name: str, default: str | None = None) -> str:
    found = parent.find(name)
    text = (found.text or "").strip() if found is not None else ""
    if not text:
        if default is None:
            raise BadReport(f"<{parent.tag}> has no <{name}>")
        return default
    return text[:MAX_TEXT]


def _count(text: str) -> int:
    if not text.isdigit() or len(text) > 12:
        raise BadReport(f"count {text[:20]!r} is not a number")
    return int(text)


def _epoch(text: str) -> dt.datetime:
    if not text.isdigit() or len(text) > 12:
        raise BadReport(f"date {text[:20]!r} is not seconds since the epoch")
    try:
        return dt.datetime.fromtimestamp(int(text), dt.UTC)
    except (OverflowError, OSError, ValueError):
        raise BadReport(f"date {text[:20]!r} out of range") from None
