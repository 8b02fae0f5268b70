"""The `DmarcReportStore` role: DMARC evaluations counted by day for the aggregate
reports we send (RFC 7489 §7.2), the aggregate reports others send us, and the log of
report days already sent (shared by every daily report job: DMARC, TLS-RPT) (issue 20).

Owns the Protocol and its rows; both backends implement it once in
`store/sql/dmarcreports.py`.

Invariants: an evaluation row is identified by (day, policy domain, key) — the key is a
digest of the row's identifying facts, the facts themselves kept as `record` (JSON the
reports/ package writes and reads) — and adding a batch adds to the counts, so batches
from several nodes or flushes sum up; a received report is stored once per (reporting
organisation, report id), a second copy is ignored; a report day has one holder at a
time and, once finished, is never run again (several nodes, restarts).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class DmarcCount:
    """`count` more evaluations with the same facts on `day` (UTC)."""

    day: dt.date
    policy_domain: str  # the domain whose DMARC record was applied
    key: str  # digest of `record`
    record: str  # JSON: source IP, identifiers, auth results, disposition, reasons
    count: int


@dataclass(frozen=True, slots=True)
class DmarcPolicySeen:
    """The DMARC record of `domain` as last seen on `day` (JSON: p, sp, pct, adkim,
    aspf, fo, rua)."""

    day: dt.date
    domain: str
    policy: str


@dataclass(frozen=True, slots=True)
class ReceivedDmarcRow:
    """One record of a report someone sent us: what `source_ip` did as `header_from`."""

    source_ip: str
    count: int
    disposition: str
    dkim: str  # policy_evaluated dkim: pass / fail
    spf: str  # policy_evaluated spf: pass / fail
    header_from: str
    dkim_domains: str  # "domain=result" comma-separated, as reported
    spf_domain: str
    spf_result: str


@dataclass(frozen=True, slots=True)
class ReceivedDmarcReport:
    org_name: str
    email: str
    report_id: str
    policy_domain: str
    begin: dt.datetime
    end: dt.datetime
    rows: tuple[ReceivedDmarcRow, ...]


@dataclass(frozen=True, slots=True)
class ReceivedDmarcLine:
    """A received row with its report's facts, for `postroom reports dmarc`."""

    org_name: str
    report_id: str
    policy_domain: str
    begin: dt.datetime
    end: dt.datetime
    row: ReceivedDmarcRow


class DmarcReportStore(Protocol):
    # -- evaluations of inbound mail, for the reports we send ------------------------
    async def add_dmarc_evaluations(self, counts: Sequence[DmarcCount],
                                    policies: Sequence[DmarcPolicySeen]) -> None:
        """Add the counts (summed with what is stored) and replace the policies seen,
        in one transaction."""
        ...
    async def dmarc_policies_for_day(self, day: dt.date) -> list[DmarcPolicySeen]:
        """The domains evaluated on `day` and their policies, by domain."""
        ...
    async def dmarc_counts_for_day(self, day: dt.date, domain: str,
                                   limit: int) -> list[DmarcCount]:
        """At most `limit` rows of `domain` on `day`, the largest counts first."""
        ...
    async def prune_dmarc_evaluations(self, before: dt.date) -> int:
        """Forget evaluations and policies of days before `before`; returns rows gone."""
        ...
    # -- reports others send us --------------------------------------------------------
    async def add_received_dmarc_report(self, report: ReceivedDmarcReport,
                                        now: dt.datetime) -> bool:
        """Store a report; False when (org_name, report_id) was stored already."""
        ...
    async def received_dmarc_lines(self, since: dt.datetime, domain: str | None,
                                   limit: int) -> list[ReceivedDmarcLine]:
        """Rows of reports whose range ends at or after `since` (of `domain` only when
        given), newest report first, at most `limit`."""
        ...
    # -- the report days log (every daily job) -------------------------------------------
    async def claim_report_day(self, job: str, day: dt.date, holder: str,
                               now: dt.datetime, until: dt.datetime) -> bool:
        """Take the run of `job` for `day` for `holder` until `until`; False when it is
        finished or another holder's claim has not expired."""
        ...
    async def finish_report_day(self, job: str, day: dt.date, holder: str,
                                now: dt.datetime) -> None:
        """Mark `job` for `day` done: it is never claimed again."""
        ...
    async def report_days_done(self, job: str, since: dt.date) -> list[dt.date]:
        """The days since `since` that `job` has finished, in order."""
        ...
