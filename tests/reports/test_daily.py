"""The once-a-day report runner (reports/daily.py) over a real store and a manual clock:
each job runs once per day however often and by however many runners it is asked, a
failed job keeps its day for a retry, a day that has not ended is refused, and the
background task wakes after midnight and catches up on yesterday at start."""

from __future__ import annotations

import asyncio
import datetime as dt
import random

import pytest

from postroom.clock import ManualClock
from postroom.reports.daily import DailyReports
from postroom.runtime import Runtime

NOW = dt.datetime(2026, 12, 7, 0, 5, tzinfo=dt.UTC)
YESTERDAY = dt.date(2026, 12, 6)


class Job:
    def __init__(self, name: str, failures: int = 0) -> None:
        self.name = name
        self.failures = failures
        self.days: list[dt.date] = []
        self.ran = asyncio.Event()

    async def run(self, day: dt.date) -> str:
        self.ran.set()
        if self.failures:
            self.failures -= 1
            raise OSError("the queue is unwell")
        self.days.append(day)
        return f"sent {day}"


async def test_each_day_runs_once_across_runners(runtime: Runtime) -> None:
    clock = ManualClock(NOW)
    dmarc, tls = Job("dmarc"), Job("tlsrpt", failures=1)
    first = DailyReports(runtime.store, clock, [dmarc, tls])
    other_node = DailyReports(runtime.store, clock, [dmarc, tls])
    outcomes = await first.run_day(YESTERDAY)
    assert [(o.job, o.state) for o in outcomes] == [("dmarc", "sent"), ("tlsrpt", "failed")]
    assert outcomes[1].detail == "the queue is unwell"
    # The other node: DMARC is done; TLS-RPT is still claimed by the first (its lease).
    outcomes = await other_node.run_day(YESTERDAY)
    assert [o.state for o in outcomes] == ["already sent", "busy"]
    # The first runner retries its own claim.
    assert [o.state for o in await first.run_day(YESTERDAY, only="tlsrpt")] == ["sent"]
    assert dmarc.days == [YESTERDAY] and tls.days == [YESTERDAY]
    assert [o.state for o in await other_node.run_day(YESTERDAY)] == ["already sent"] * 2
    with pytest.raises(ValueError, match="has not ended"):
        await first.run_day(NOW.date())


async def test_background_runner_catches_up_and_wakes_after_midnight(
        runtime: Runtime) -> None:
    clock = ManualClock(NOW)
    job = Job("dmarc")
    runner = DailyReports(runtime.store, clock, [job], rng=random.Random(1),
                          max_delay=dt.timedelta(minutes=10))
    runner.start()
    try:
        await asyncio.wait_for(job.ran.wait(), 10)  # at start: yesterday
        job.ran.clear()
        clock.advance(dt.timedelta(hours=12))
        runner.wake()  # noon: nothing new to do, back to sleep
        await asyncio.sleep(0.1)
        assert not job.ran.is_set()
        clock.set(dt.datetime(2026, 12, 8, 0, 11, tzinfo=dt.UTC))  # past midnight + delay
        runner.wake()
        await asyncio.wait_for(job.ran.wait(), 10)
    finally:
        await runner.stop()
    assert job.days == [YESTERDAY, dt.date(2026, 12, 7)]
