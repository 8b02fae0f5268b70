"""Contract tests for TlsReportStore (issue 20, TLS-RPT), on every backend: outcome
counts add up per day and key, and a received report is stored once."""

from __future__ import annotations

import datetime as dt

from postroom.store.api import Store
from postroom.store.tlsreports_api import ReceivedTlsPolicy, TlsOutcomeCount

DAY = dt.date(2026, 12, 6)
NOW = dt.datetime(2026, 12, 7, 1, 0, tzinfo=dt.UTC)


def _count(result: str = "", count: int = 1, day: dt.date = DAY,
           strings: tuple[str, ...] = ("version: STSv1", "mode: enforce")) -> TlsOutcomeCount:
    return TlsOutcomeCount(day, "example.net", "sts", strings, "mx.example.net",
                           "192.0.2.1", result, "", count)


async def test_outcome_counts_add_up_per_day_and_key(store: Store) -> None:
    await store.add_tls_outcomes([_count(count=2), _count("certificate-expired")])
    await store.add_tls_outcomes([_count(count=3), _count(day=DAY + dt.timedelta(days=1))])
    # A policy string past any index entry's size still keys its own row.
    await store.add_tls_outcomes([_count(strings=("x" * 10000,))])
    rows = await store.tls_outcomes(DAY)
    counts = sorted((row.result, row.policy_strings[0][:7], row.count) for row in rows)
    assert counts == [("", "version", 5), ("", "x" * 7, 1), ("certificate-expired", "version", 1)]
    assert rows[0].day == DAY and rows[0].mx_host == "mx.example.net"
    assert await store.delete_tls_outcomes(DAY) == 3
    assert await store.tls_outcomes(DAY) == []
    assert len(await store.tls_outcomes(DAY + dt.timedelta(days=1))) == 1


def _policy(position: int, domain: str = "example.org") -> ReceivedTlsPolicy:
    return ReceivedTlsPolicy("Sender Inc", "r-1", position, "tls@sender.example",
                             NOW - dt.timedelta(days=1), NOW, domain, "sts", 10, 2,
                             (("certificate-expired", 2),), NOW)


async def test_a_received_report_is_stored_once(store: Store) -> None:
    assert await store.add_received_tls_report([_policy(0), _policy(1, "example.com")])
    assert not await store.add_received_tls_report([_policy(0), _policy(1, "example.com")])
    stored = await store.received_tls_reports(NOW - dt.timedelta(days=2))
    assert stored == [_policy(0), _policy(1, "example.com")]
    only = await store.received_tls_reports(NOW - dt.timedelta(days=2), "EXAMPLE.com")
    assert [policy.position for policy in only] == [1]
    assert await store.received_tls_reports(NOW + dt.timedelta(seconds=1)) == []
