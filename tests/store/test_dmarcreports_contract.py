"""Contract tests for DmarcReportStore (issue 20), on every backend: evaluation counts add
up per day and key, a received report is stored once, and a report day is run once."""

from __future__ import annotations

import datetime as dt

from postroom.store.api import Store
from postroom.store.dmarcreports_api import (
    DmarcCount,
    DmarcPolicySeen,
    ReceivedDmarcReport,
    ReceivedDmarcRow,
)

DAY = dt.date(2026, 12, 6)
NOW = dt.datetime(2026, 12, 7, 1, 0, tzinfo=dt.UTC)


def _count(key: str, count: int = 1, day: dt.date = DAY,
           domain: str = "example.net") -> DmarcCount:
    return DmarcCount(day, domain, key, '{"row": "' + key + '"}', count)


async def test_evaluation_counts_add_up(store: Store) -> None:
    await store.add_dmarc_evaluations(
        [_count("a", 2), _count("b")], [DmarcPolicySeen(DAY, "example.net", '{"p": "none"}')])
    await store.add_dmarc_evaluations(
        [_count("a", 3), _count("a", day=DAY + dt.timedelta(days=1))],
        [DmarcPolicySeen(DAY, "example.net", '{"p": "reject"}')])
    rows = await store.dmarc_counts_for_day(DAY, "example.net", 10)
    assert [(r.key, r.count, r.record) for r in rows] == [("a", 5, '{"row": "a"}'),
                                                          ("b", 1, '{"row": "b"}')]
    assert await store.dmarc_counts_for_day(DAY, "example.net", 1) == rows[:1]
    policies = await store.dmarc_policies_for_day(DAY)
    assert [(p.domain, p.policy) for p in policies] == [("example.net", '{"p": "reject"}')]
    assert await store.prune_dmarc_evaluations(DAY + dt.timedelta(days=1)) == 2
    assert await store.dmarc_counts_for_day(DAY, "example.net", 10) == []
    assert await store.dmarc_policies_for_day(DAY) == []
    assert len(await store.dmarc_counts_for_day(DAY + dt.timedelta(days=1), "example.net",
                                                10)) == 1


def _report(report_id: str = "r-1", domain: str = "example.org",
            end: dt.datetime = NOW) -> ReceivedDmarcReport:
    row = ReceivedDmarcRow("192.0.2.1", 7, "none", "pass", "fail", domain,
                           f"{domain}=pass", domain, "softfail")
    return ReceivedDmarcReport("Big Mail", "noreply@big.example", report_id, domain,
                               end - dt.timedelta(days=1), end, (row, row))


async def test_received_report_is_stored_once(store: Store) -> None:
    assert await store.add_received_dmarc_report(_report(), NOW) is True
    assert await store.add_received_dmarc_report(_report(), NOW) is False
    assert await store.add_received_dmarc_report(
        _report("r-2", "example.com", NOW - dt.timedelta(days=30)), NOW) is True
    lines = await store.received_dmarc_lines(NOW - dt.timedelta(days=7), None, 100)
    assert [(line.report_id, line.row.count) for line in lines] == [("r-1", 7), ("r-1", 7)]
    assert lines[0].end == NOW and lines[0].row.spf_result == "softfail"
    assert await store.received_dmarc_lines(NOW - dt.timedelta(days=60), "example.com",
                                            100) != []
    assert await store.received_dmarc_lines(NOW - dt.timedelta(days=7), "example.com",
                                            100) == []


async def test_report_day_runs_once(store: Store) -> None:
    later = NOW + dt.timedelta(hours=1)
    assert await store.claim_report_day("dmarc", DAY, "node-a", NOW, later) is True
    assert await store.claim_report_day("dmarc", DAY, "node-b", NOW, later) is False
    # Another job's day is its own.
    assert await store.claim_report_day("tlsrpt", DAY, "node-b", NOW, later) is True
    # An expired claim is taken over; a finished day never again.
    assert await store.claim_report_day("dmarc", DAY, "node-b", later, later) is True
    await store.finish_report_day("dmarc", DAY, "node-b", later)
    assert await store.claim_report_day("dmarc", DAY, "node-a", later + dt.timedelta(
        days=1), later + dt.timedelta(days=2)) is False
    assert await store.report_days_done("dmarc", DAY - dt.timedelta(days=3)) == [DAY]
    assert await store.report_days_done("tlsrpt", DAY) == []
