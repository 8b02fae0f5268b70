"""DMARC evaluations, received DMARC reports and the report days log (issue 20): the
`DmarcReportStore` methods, written once for both backends.

Days are stored as ISO text (YYYY-MM-DD) on both backends, times through the dialect.
Adding counts is one upsert per row that adds to the stored count, so concurrent
flushes (nodes, SMTP worker processes) sum; claiming a day is the lease upsert of
sql/tls.py with one more condition: a finished day is never taken again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from postroom.store.dmarcreports_api import (
    DmarcCount,
    DmarcPolicySeen,
    ReceivedDmarcLine,
    ReceivedDmarcReport,
    ReceivedDmarcRow,
)
from postroom.store.sql.base import SqlBackend

_ADD_COUNT = (
    "INSERT INTO dmarc_evaluations (day, policy_domain, row_key, record, count)"
    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (day, policy_domain, row_key)"
    " DO UPDATE SET count = dmarc_evaluations.count + excluded.count"
)
_PUT_POLICY = (
    "INSERT INTO dmarc_policies (day, domain, policy) VALUES (?, ?, ?)"
    " ON CONFLICT (day, domain) DO UPDATE SET policy = excluded.policy"
)
_CLAIM_DAY = (
    "INSERT INTO report_days (job, day, holder, expires) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (job, day) DO UPDATE SET holder = excluded.holder,"
    " expires = excluded.expires"
    " WHERE report_days.finished IS NULL"
    " AND (report_days.expires <= ? OR report_days.holder = excluded.holder)"
    " RETURNING holder"
)
_ROW_COLUMNS = ("source_ip, count, disposition, dkim, spf, header_from, dkim_domains,"
                " spf_domain, spf_result")


class DmarcReportSql(SqlBackend):
    """Statements of the `DmarcReportStore` role."""

    async def add_dmarc_evaluations(self, counts: Sequence[DmarcCount],
                                    policies: Sequence[DmarcPolicySeen]) -> None:
        if not counts and not policies:
            return
        async with self._tx() as tx:
            if counts:
                await tx.execute_many(_ADD_COUNT, [
                    (c.day.isoformat(), c.policy_domain, c.key, c.record, c.count)
                    for c in counts])
            if policies:
                await tx.execute_many(_PUT_POLICY, [
                    (p.day.isoformat(), p.domain, p.policy) for p in policies])

    async def dmarc_policies_for_day(self, day: dt.date) -> list[DmarcPolicySeen]:
        rows = await self._rows("SELECT domain, policy FROM dmarc_policies WHERE day = ?"
                                " ORDER BY domain" + self.dialect.collate, (day.isoformat(),))
        return [DmarcPolicySeen(day, row[0], row[1]) for row in rows]

    async def dmarc_counts_for_day(self, day: dt.date, domain: str,
                                   limit: int) -> list[DmarcCount]:
        rows = await self._rows(
            "SELECT row_key, record, count FROM dmarc_evaluations"
            " WHERE day = ? AND policy_domain = ? ORDER BY count DESC, row_key LIMIT ?",
            (day.isoformat(), domain, limit))
        return [DmarcCount(day, domain, row[0], row[1], int(row[2])) for row in rows]

    async def prune_dmarc_evaluations(self, before: dt.date) -> int:
        async with self._tx() as tx:
            gone = await tx.fetch("DELETE FROM dmarc_evaluations WHERE day < ? RETURNING 1",
                                  (before.isoformat(),))
            await tx.fetch("DELETE FROM dmarc_policies WHERE day < ?", (before.isoformat(),))
        return len(gone)

    async def add_received_dmarc_report(self, report: ReceivedDmarcReport,
                                        now: dt.datetime) -> bool:
        time = self.dialect.time
        async with self._tx() as tx:
            rows = await tx.fetch(
                "INSERT INTO dmarc_received_reports (org_name, email, report_id,"
                " policy_domain, begin_time, end_time, received) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (org_name, report_id) DO NOTHING RETURNING id",
                (report.org_name, report.email, report.report_id, report.policy_domain,
                 time(report.begin), time(report.end), time(now)))
            if not rows:
                return False
            await tx.execute_many(
                f"INSERT INTO dmarc_received_rows (report, {_ROW_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(rows[0][0], r.source_ip, r.count, r.disposition, r.dkim, r.spf,
                  r.header_from, r.dkim_domains, r.spf_domain, r.spf_result)
                 for r in report.rows])
        return True

    async def received_dmarc_lines(self, since: dt.datetime, domain: str | None,
                                   limit: int) -> list[ReceivedDmarcLine]:
        where = "r.end_time >= ?"
        params: list[object] = [self.dialect.time(since)]
        if domain is not None:
            where += " AND r.policy_domain = ?"
            params.append(domain)
        rows = await self._rows(
            "SELECT r.org_name, r.report_id, r.policy_domain, r.begin_time, r.end_time,"
            f" {', '.join('w.' + c.strip() for c in _ROW_COLUMNS.split(','))}"
            " FROM dmarc_received_reports r JOIN dmarc_received_rows w ON w.report = r.id"
            f" WHERE {where} ORDER BY r.end_time DESC, r.id DESC, w.count DESC LIMIT ?",
            (*params, limit))
        read = self.dialect.read_time
        return [ReceivedDmarcLine(row[0], row[1], row[2], read(row[3]), read(row[4]),
                                  ReceivedDmarcRow(row[5], int(row[6]), *row[7:]))
                for row in rows]

    async def claim_report_day(self, job: str, day: dt.date, holder: str,
                               now: dt.datetime, until: dt.datetime) -> bool:
        time = self.dialect.time
        async with self._tx() as tx:
            rows = await tx.fetch(_CLAIM_DAY, (job, day.isoformat(), holder, time(until),
                                               time(now)))
        return bool(rows)

    async def finish_report_day(self, job: str, day: dt.date, holder: str,
                                now: dt.datetime) -> None:
        async with self._tx() as tx:
            await tx.fetch("UPDATE report_days SET finished = ? WHERE job = ? AND day = ?",
                           (self.dialect.time(now), job, day.isoformat()))

    async def report_days_done(self, job: str, since: dt.date) -> list[dt.date]:
        rows = await self._rows("SELECT day FROM report_days WHERE job = ? AND day >= ?"
                                " AND finished IS NOT NULL ORDER BY day",
                                (job, since.isoformat()))
        return [dt.date.fromisoformat(row[0]) for row in rows]
