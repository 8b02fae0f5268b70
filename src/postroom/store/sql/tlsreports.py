"""TLS-RPT outcomes and received reports (RFC 8460, issue 20): the `TlsReportStore`
methods, written once for both backends.

An outcome row is keyed by its day and a digest of its aggregation key (the policy
strings can be long; PostgreSQL's index entries cannot), and each write adds to the
count with an upsert, so concurrent batches from several nodes sum instead of racing.
Days are ISO `YYYY-MM-DD` text on both backends (text order is day order).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence

from postroom.store.sql.base import SqlBackend
from postroom.store.sql.rows import Row
from postroom.store.tlsreports_api import ReceivedTlsPolicy, TlsOutcomeCount

_ADD_OUTCOME = (
    "INSERT INTO tls_outcomes (day, outcome_key, policy_domain, policy_type, policy_strings,"
    " mx_host, receiving_ip, result, detail, count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (day, outcome_key) DO UPDATE SET count = tls_outcomes.count + excluded.count"
)
_OUTCOME_COLUMNS = ("day, policy_domain, policy_type, policy_strings, mx_host, receiving_ip,"
                    " result, detail, count")
_ADD_REPORT = (
    "INSERT INTO tls_reports_received (organization, report_id, position, contact, begins,"
    " ends, policy_domain, policy_type, successful, failed, failures, received)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (organization, report_id, position) DO NOTHING RETURNING position"
)
_REPORT_COLUMNS = ("organization, report_id, position, contact, begins, ends, policy_domain,"
                   " policy_type, successful, failed, failures, received")


def outcome_key(count: TlsOutcomeCount) -> str:
    fields = [count.policy_domain, count.policy_type, list(count.policy_strings),
              count.mx_host, count.receiving_ip, count.result, count.detail]
    return hashlib.sha256(json.dumps(fields).encode()).hexdigest()


def _outcome(row: Row) -> TlsOutcomeCount:
    return TlsOutcomeCount(dt.date.fromisoformat(row[0]), row[1], row[2],
                           tuple(json.loads(row[3])), row[4], row[5], row[6], row[7],
                           int(row[8]))


class TlsReportSql(SqlBackend):
    """Statements of the `TlsReportStore` role."""

    async def add_tls_outcomes(self, counts: Sequence[TlsOutcomeCount]) -> None:
        if not counts:
            return
        rows = [(c.day.isoformat(), outcome_key(c), c.policy_domain, c.policy_type,
                 json.dumps(list(c.policy_strings)), c.mx_host, c.receiving_ip, c.result,
                 c.detail, c.count) for c in counts]
        async with self._tx() as tx:
            await tx.execute_many(_ADD_OUTCOME, rows)

    async def tls_outcomes(self, day: dt.date) -> list[TlsOutcomeCount]:
        rows = await self._rows(f"SELECT {_OUTCOME_COLUMNS} FROM tls_outcomes WHERE day = ?"
                                " ORDER BY policy_domain, mx_host, receiving_ip, result"
                                + self.dialect.collate, (day.isoformat(),))
        return [_outcome(row) for row in rows]

    async def delete_tls_outcomes(self, through: dt.date) -> int:
        async with self._tx() as tx:
            rows = await tx.fetch("DELETE FROM tls_outcomes WHERE day <= ? RETURNING day",
                                  (through.isoformat(),))
        return len(rows)

    async def add_received_tls_report(self, policies: Sequence[ReceivedTlsPolicy]) -> bool:
        time = self.dialect.time
        added = False
        async with self._tx() as tx:
            for p in policies:
                rows = await tx.fetch(_ADD_REPORT, (
                    p.organization, p.report_id, p.position, p.contact, time(p.begin),
                    time(p.end), p.policy_domain, p.policy_type, p.successful, p.failed,
                    json.dumps([list(item) for item in p.failures]), time(p.received)))
                added = added or bool(rows)
        return added

    async def received_tls_reports(self, since: dt.datetime,
                                   domain: str | None = None) -> list[ReceivedTlsPolicy]:
        sql = f"SELECT {_REPORT_COLUMNS} FROM tls_reports_received WHERE ends >= ?"
        params: list[object] = [self.dialect.time(since)]
        if domain is not None:
            sql += " AND policy_domain = ?"
            params.append(domain.lower())
        rows = await self._rows(sql + " ORDER BY begins, organization, report_id, position",
                                params)
        return [self._received(row) for row in rows]

    def _received(self, row: Row) -> ReceivedTlsPolicy:
        read = self.dialect.read_time
        failures = tuple((str(kind), int(n)) for kind, n in json.loads(row[10]))
        return ReceivedTlsPolicy(row[0], row[1], int(row[2]), row[3], read(row[4]),
                                 read(row[5]), row[6], row[7], int(row[8]), int(row[9]),
                                 failures, read(row[11]))
