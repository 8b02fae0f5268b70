"""The `TlsReportStore` role: TLS-RPT (RFC 8460, issue 20) — the outcomes of our outbound
TLS sessions counted per UTC day, and the reports other senders send about our domains.

Owns the Protocol and its rows; both backends implement it once in
`store/sql/tlsreports.py`.

Invariants: outcome counts only ever add up (the same key written twice is one row whose
count is the sum), so batches from several nodes of one PostgreSQL database merge; a
received report is stored once per (organization, report-id, policy position): the same
report arriving twice is not counted twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class TlsOutcomeCount:
    """How many sessions of one UTC day ended alike (RFC 8460 §4.4's aggregation key)."""

    day: dt.date
    policy_domain: str
    policy_type: str  # sts, tlsa, no-policy-found
    policy_strings: tuple[str, ...]
    mx_host: str
    receiving_ip: str
    result: str  # "" for successful sessions, else an RFC 8460 §4.3 result-type
    detail: str  # failure-reason-code
    count: int


@dataclass(frozen=True, slots=True)
class ReceivedTlsPolicy:
    """One policy of a TLS-RPT report someone sent us (one report has one or more)."""

    organization: str
    report_id: str
    position: int  # the policy's index in the report's policies[]
    contact: str
    begin: dt.datetime
    end: dt.datetime
    policy_domain: str
    policy_type: str
    successful: int
    failed: int
    failures: tuple[tuple[str, int], ...]  # (result-type, failed-session-count), summed
    received: dt.datetime


class TlsReportStore(Protocol):
    async def add_tls_outcomes(self, counts: Sequence[TlsOutcomeCount]) -> None:
        """Add each count to its key's row of its day (created at need)."""
        ...
    async def tls_outcomes(self, day: dt.date) -> list[TlsOutcomeCount]: ...
    async def delete_tls_outcomes(self, through: dt.date) -> int:
        """Forget the outcomes of `through` and every day before it."""
        ...
    async def add_received_tls_report(self, policies: Sequence[ReceivedTlsPolicy]) -> bool:
        """Store a received report's policies; False when it was stored already."""
        ...
    async def received_tls_reports(self, since: dt.datetime,
                                   domain: str | None = None) -> list[ReceivedTlsPolicy]:
        """Policies of reports whose date range ends at or after `since`, oldest first."""
        ...
