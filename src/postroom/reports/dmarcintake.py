"""DMARC aggregate reports others send about our domains, read into the store (the
intake's "dmarc" parser, reports/intake.py) and summarised for `postroom reports dmarc`.

Owns the parser and the summary: who sent as our domains (source IP), how many messages,
what the receiver did (disposition) and whether DKIM and SPF passed aligned, per
reporting organisation.

Invariants: `parse` runs in a thread and only reads (reports/dmarcxml.py holds the XML
limits); a report already stored (same organisation and report id) is not counted twice.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from postroom.reports.dmarcxml import parse_feedback
from postroom.reports.intake import DMARC
from postroom.store.api import Store
from postroom.store.dmarcreports_api import ReceivedDmarcLine, ReceivedDmarcReport

MAX_LINES = 5_000  # rows `postroom reports dmarc` reads


class DmarcReportParser:
    """The intake's parser of DMARC aggregate reports."""

    kind = DMARC

    def __init__(self, store: Store) -> None:
        self.store = store

    def parse(self, data: bytes) -> ReceivedDmarcReport:
        return parse_feedback(data)

    async def save(self, parsed: ReceivedDmarcReport, now: dt.datetime) -> str:
        is_new = await self.store.add_received_dmarc_report(parsed, now)
        what = "stored" if is_new else "already stored"
        return (f"{what}: {parsed.org_name} about {parsed.policy_domain},"
                f" {len(parsed.rows)} row(s), id {parsed.report_id}")


@dataclass(frozen=True, slots=True)
class SourceSummary:
    """One line of `postroom reports dmarc`."""

    domain: str
    source_ip: str
    reporter: str
    messages: int
    disposition: str
    dkim: str
    spf: str

    @property
    def passes(self) -> bool:
        return self.dkim == "pass" or self.spf == "pass"


def summarise(lines: list[ReceivedDmarcLine]) -> list[SourceSummary]:
    """Rows summed by (domain, source IP, reporter, disposition, dkim, spf), the most
    messages first."""
    totals: dict[tuple[str, str, str, str, str, str], int] = {}
    for line in lines:
        row = line.row
        key = (line.policy_domain, row.source_ip, line.org_name, row.disposition, row.dkim,
               row.spf)
        totals[key] = totals.get(key, 0) + row.count
    found = [SourceSummary(*key[:3], count, *key[3:]) for key, count in totals.items()]
    return sorted(found, key=lambda s: (s.domain, -s.messages, s.source_ip))


async def recent_sources(store: Store, now: dt.datetime, days: int,
                         domain: str | None) -> list[SourceSummary]:
    since = now - dt.timedelta(days=days)
    lines = await store.received_dmarc_lines(since, domain.lower() if domain else None,
                                             MAX_LINES)
    return summarise(lines)
