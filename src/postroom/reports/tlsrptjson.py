"""TLS-RPT's formats (RFC 8460), sans-IO: the `_smtp._tls` TXT record (§3), the JSON
report we send (§4.4) with its file name (§5.1), and the reports others send us, read
as hostile input.

Owns the report's shape both ways. Invariants: a report we build lists every policy of
one policy domain and day, its summary counting every session even when failure-details
is cut at `MAX_FAILURE_DETAILS`; a report we read is refused (`BadSyntax`) unless it
decompresses within `MAX_REPORT_JSON` bytes, nests at most `MAX_DEPTH` deep, has at most
`MAX_POLICIES` policies of at most `MAX_FAILURE_DETAILS` details and matches §4.4's
required fields and types — nothing else of it is kept.
"""

from __future__ import annotations

import datetime as dt
import gzip
import itertools
import json
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from postroom.errors import BadSyntax
from postroom.store.tlsreports_api import ReceivedTlsPolicy, TlsOutcomeCount

MAX_RUA = 5  # report URIs of one record we send to (§3 sets no limit)
MAX_POLICIES = 100  # policies[] of one report, both ways
MAX_FAILURE_DETAILS = 1000  # failure-details[] of one policy, both ways
MAX_REPORT_JSON = 4 * 1024 * 1024  # a received report, decompressed
MAX_DEPTH = 16  # nesting of a received report (§4.4 needs 4)
MAX_STRING = 1024  # one string kept from a received report
MAX_COUNT = 2**53  # a session count (JSON numbers exact in every parser)
MEDIA_GZIP = "application/tlsrpt+gzip"  # §6.4
MEDIA_JSON = "application/tlsrpt+json"  # §6.3
POLICY_TYPES = frozenset({"sts", "tlsa", "no-policy-found"})

_RECORD_START = re.compile(r"v=TLSRPTv1\s*;", re.IGNORECASE)
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))


@dataclass(frozen=True, slots=True)
class Reporter:
    """Who we are in the reports we send."""

    organization: str  # organization-name (REPORT_ORG_NAME)
    contact: str  # contact-info (the report sender's address)
    submitter: str  # our host name: the file name's sender, TLS-Report-Submitter


def parse_rua(records: Iterable[str]) -> list[str]:
    """The rua URIs of the `_smtp._tls` TXT answer (§3): exactly one record starting
    `v=TLSRPTv1;` counts (none or several: no reporting); its `mailto:` and `https:`
    URIs, at most `MAX_RUA`."""
    found = [text for text in records if _RECORD_START.match(text.strip())]
    if len(found) != 1:
        return []
    for field in found[0].split(";")[1:]:
        name, _, value = field.partition("=")
        if name.strip().lower() == "rua":
            uris = [uri.strip() for uri in value.split(",")]
            return [uri for uri in uris if uri.lower().startswith(("mailto:", "https://"))
                    and len(uri) <= MAX_STRING][:MAX_RUA]
    return []


def _stamp(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def day_range(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """A UTC day's date-range: start and end (its last second, as §4.4's example)."""
    begin = dt.datetime.combine(day, dt.time(), dt.UTC)
    return begin, begin + dt.timedelta(days=1, seconds=-1)


def _mx_hosts(policy_type: str, strings: Sequence[str], counts: Sequence[TlsOutcomeCount],
              ) -> list[str]:
    """§4.4 mx-host: an STS policy's `mx` patterns, else the MX names tried."""
    if policy_type == "sts":
        patterns = [line.partition(":")[2].strip() for line in strings
                    if line.partition(":")[0].strip().lower() == "mx"]
        if patterns:
            return patterns
    return sorted({count.mx_host for count in counts if count.mx_host})


def _failure_details(failures: Sequence[TlsOutcomeCount]) -> list[dict[str, Any]]:
    details: Counter[tuple[str, str, str, str]] = Counter()
    for count in failures:
        details[(count.result, count.mx_host, count.receiving_ip, count.detail)] += count.count
    rendered = []
    for (result, mx_host, ip, reason), number in details.most_common(MAX_FAILURE_DETAILS):
        item: dict[str, Any] = {"result-type": result, "failed-session-count": number}
        if mx_host:
            item["receiving-mx-hostname"] = mx_host
        if ip:
            item["receiving-ip"] = ip
        if reason:
            item["failure-reason-code"] = reason
        rendered.append(item)
    return rendered


def _policy(key: tuple[str, tuple[str, ...]], counts: Sequence[TlsOutcomeCount],
            domain: str) -> dict[str, Any]:
    policy_type, strings = key
    policy: dict[str, Any] = {"policy-type": policy_type, "policy-domain": domain}
    if strings:
        policy["policy-string"] = list(strings)
    hosts = _mx_hosts(policy_type, strings, counts)
    if hosts:
        policy["mx-host"] = hosts
    failures = [count for count in counts if count.result]
    entry: dict[str, Any] = {"policy": policy, "summary": {
        "total-successful-session-count": sum(c.count for c in counts if not c.result),
        "total-failure-session-count": sum(c.count for c in failures)}}
    if failures:
        entry["failure-details"] = _failure_details(failures)
    return entry


def build_report(reporter: Reporter, domain: str, day: dt.date,
                 counts: Sequence[TlsOutcomeCount], report_id: str) -> dict[str, Any]:
    """The §4.4 report of one policy domain's outcomes of one UTC day."""
    begin, end = day_range(day)
    by_policy: dict[tuple[str, tuple[str, ...]], list[TlsOutcomeCount]] = {}
    for count in counts:
        by_policy.setdefault((count.policy_type, count.policy_strings), []).append(count)
    policies = [_policy(key, group, domain)
                for key, group in sorted(by_policy.items())[:MAX_POLICIES]]
    return {
        "organization-name": reporter.organization,
        "date-range": {"start-datetime": _stamp(begin), "end-datetime": _stamp(end)},
        "contact-info": reporter.contact,
        "report-id": report_id,
        "policies": policies,
    }


def render_report(report: Mapping[str, Any]) -> bytes:
    """The report gzipped (§5.1: application/tlsrpt+gzip); mtime 0 for stable bytes."""
    return gzip.compress(json.dumps(report, separators=(",", ":")).encode(), mtime=0)


def report_filename(submitter: str, domain: str, day: dt.date, unique: str) -> str:
    """§5.1: `sender!policy-domain!begin-timestamp!end-timestamp!unique-id.json.gz`."""
    begin, end = day_range(day)
    return (f"{submitter}!{domain}!{int(begin.timestamp())}!{int(end.timestamp())}"
            f"!{unique}.json.gz")


# Reading reports others send us (§4.4, §6): hostile input.

def decompress(data: bytes, limit: int = MAX_REPORT_JSON) -> bytes:
    """Inflate a gzip member, refusing more than `limit` bytes of output (a bomb)."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as error:
        raise BadSyntax(f"not gzip data: {error}") from None
    if len(out) > limit:
        raise BadSyntax(f"the report inflates past {limit} bytes")
    if not inflater.eof:
        raise BadSyntax("the gzip data is truncated")
    return out


def _depth(text: bytes) -> int:
    """The deepest nesting of JSON text, strings left out (checked before parsing)."""
    brackets = _STRING.sub(b"", text).translate(None, _NOT_BRACKETS)
    steps = (1 if byte in b"[{" else -1 for byte in brackets)
    return max(itertools.accumulate(steps, initial=0))


def load_report(data: bytes, media_type: str) -> dict[str, Any]:
    """The JSON object of a received report, within every size and depth limit."""
    if media_type.lower() == MEDIA_GZIP:
        data = decompress(data)
    elif len(data) > MAX_REPORT_JSON:
        raise BadSyntax(f"the report is larger than {MAX_REPORT_JSON} bytes")
    if _depth(data) > MAX_DEPTH:
        raise BadSyntax(f"the report nests deeper than {MAX_DEPTH}")
    try:
        report = json.loads(data)
    except (ValueError, RecursionError) as error:
        raise BadSyntax(f"the report is not JSON: {error}") from None
    if not isinstance(report, dict):
        raise BadSyntax("the report is not a JSON object")
    return report


def _field(holder: Mapping[str, Any], name: str, kind: type) -> Any:
    value = holder.get(name)
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)
                        or not 0 <= value <= MAX_COUNT):
        raise BadSyntax(f"{name} must be a count")
    if not isinstance(value, kind):
        raise BadSyntax(f"{name} is missing or not a {kind.__name__}")
    if isinstance(value, str) and len(value) > MAX_STRING:
        raise BadSyntax(f"{name} is longer than {MAX_STRING} characters")
    if isinstance(value, list) and len(value) > MAX_FAILURE_DETAILS:
        raise BadSyntax(f"{name} has more than {MAX_FAILURE_DETAILS} entries")
    return value


def _time(holder: Mapping[str, Any], name: str) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(_field(holder, name, str))
    except ValueError:
        raise BadSyntax(f"{name} is not an RFC 3339 date-time") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _failures(entry: Mapping[str, Any]) -> tuple[tuple[str, int], ...]:
    if "failure-details" not in entry:
        return ()
    totals: Counter[str] = Counter()
    for detail in _field(entry, "failure-details", list):
        if not isinstance(detail, dict):
            raise BadSyntax("a failure-details entry is not an object")
        totals[_field(detail, "result-type", str)] += _field(detail, "failed-session-count",
                                                              int)
    return tuple(sorted(totals.items()))


def parse_report(report: Mapping[str, Any], received: dt.datetime) -> list[ReceivedTlsPolicy]:
    """The policies of a received report, its §4.4 required fields checked."""
    organization = _field(report, "organization-name", str)
    report_id = _field(report, "report-id", str)
    contact = report.get("contact-info", "")
    if not isinstance(contact, str) or len(contact) > MAX_STRING:
        raise BadSyntax("contact-info is not a string")
    dates = _field(report, "date-range", dict)
    begin, end = _time(dates, "start-datetime"), _time(dates, "end-datetime")
    entries = _field(report, "policies", list)
    if not entries or len(entries) > MAX_POLICIES:
        raise BadSyntax(f"policies must hold 1 to {MAX_POLICIES} entries")
    parsed = []
    for position, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise BadSyntax("a policies entry is not an object")
        policy, summary = _field(entry, "policy", dict), _field(entry, "summary", dict)
        policy_type = _field(policy, "policy-type", str)
        if policy_type not in POLICY_TYPES:
            raise BadSyntax(f"unknown policy-type {policy_type!r}")
        parsed.append(ReceivedTlsPolicy(
            organization, report_id, position, contact, begin, end,
            _field(policy, "policy-domain", str).rstrip(".").lower(), policy_type,
            _field(summary, "total-successful-session-count", int),
            _field(summary, "total-failure-session-count", int), _failures(entry), received))
    return parsed
