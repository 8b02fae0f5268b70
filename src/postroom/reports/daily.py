"""The once-a-day report runner: each registered job (DMARC aggregate reports, TLS-RPT)
runs for the previous UTC day, once per day across restarts and nodes.

Owns when jobs run and that a day runs once: the runner wakes a little after 00:00 UTC
(plus a random delay of up to `max_delay`, so installations do not all mail the big
receivers at the same second — RFC 7489 §7.2.1.2 leaves the time to us, RFC 8460 §4.1
asks for the report soon after the day ends), claims the day for each job in the store
(`DmarcReportStore.claim_report_day`: one holder, a lease), runs the job and marks the day
finished. A job that fails keeps its day unfinished: it is tried again `RETRY_AFTER`
later, until the day is `GIVE_UP_AFTER` old. `postroom reports send [--day]` runs the
same `run_day` by hand.

Invariants: never blocks the loop (jobs are coroutines; their heavy parts run in
threads); a job's exception is logged, never raised into the loop; a day finished by one
node or an earlier run is never sent again; the day is always a complete UTC day before
now.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import random
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from postroom.clock import Clock
from postroom.loops import cancel_and_wait, wait_event
from postroom.store.api import Store

log = logging.getLogger(__name__)

MAX_DELAY = dt.timedelta(minutes=15)  # the random delay after 00:00 UTC
LEASE = dt.timedelta(hours=1)  # a claimed day: how long before another node may take it
RETRY_AFTER = dt.timedelta(hours=1)
GIVE_UP_AFTER = dt.timedelta(days=2)  # a day this old is no longer tried
MAX_SLEEP_SECONDS = 300.0  # re-read the clock at least this often


class DailyJob(Protocol):
    """One kind of daily report."""

    name: str  # its key in the report days log: "dmarc", "tlsrpt"

    async def run(self, day: dt.date) -> str:
        """Send the reports of `day` (UTC); a line saying what was sent. Raises to have
        the day tried again."""
        ...


@dataclass(frozen=True, slots=True)
class JobOutcome:
    job: str
    day: dt.date
    state: str  # "sent", "already sent", "busy" (another node holds it), "failed"
    detail: str = ""


def previous_day(now: dt.datetime) -> dt.date:
    return (now.astimezone(dt.UTC) - dt.timedelta(days=1)).date()


def day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """The UTC day as [start, end): 00:00:00 to the next 00:00:00."""
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    return start, start + dt.timedelta(days=1)


class DailyReports:
    def __init__(self, store: Store, clock: Clock, jobs: Sequence[DailyJob] = (), *,
                 rng: random.Random | None = None, max_delay: dt.timedelta = MAX_DELAY
                 ) -> None:  # fmt: skip
        self.store = store
        self.clock = clock
        self.jobs: list[DailyJob] = list(jobs)
        self.rng = rng or random.Random()
        self.max_delay = max_delay
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def register(self, job: DailyJob) -> None:
        self.jobs.append(job)

    def start(self) -> None:
        if self._task is None and self.jobs:
            self._task = asyncio.create_task(self._run(), name="daily-reports")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def run_day(self, day: dt.date, only: str | None = None) -> list[JobOutcome]:
        """Run every job (or the one named `only`) for `day`, each at most once ever."""
        if day >= self.clock.now().astimezone(dt.UTC).date():
            raise ValueError(f"{day} has not ended yet (UTC)")
        return [await self._run_job(job, day) for job in self.jobs
                if only is None or job.name == only]

    async def _run_job(self, job: DailyJob, day: dt.date) -> JobOutcome:
        now = self.clock.now()
        try:
            if not await self.store.claim_report_day(job.name, day, self.holder, now,
                                                     now + LEASE):
                done = await self.store.report_days_done(job.name, day)
                state = "already sent" if day in done else "busy"
                return JobOutcome(job.name, day, state)
            detail = await job.run(day)
            await self.store.finish_report_day(job.name, day, self.holder, self.clock.now())
        except Exception as error:
            log.exception("%s reports for %s failed: %s", job.name, day, error)
            return JobOutcome(job.name, day, "failed", str(error))
        log.info("%s reports for %s: %s", job.name, day, detail)
        return JobOutcome(job.name, day, "sent", detail)

    async def _run(self) -> None:
        """Wake after each midnight (plus the delay); on start, catch up on yesterday."""
        while True:
            day = previous_day(self.clock.now())
            outcomes = await self.run_day(day)
            failed = any(o.state in {"failed", "busy"} for o in outcomes)
            start_of_next, _ = day_bounds(day + dt.timedelta(days=2))
            wake = start_of_next + self.max_delay * self.rng.random()
            if failed and self.clock.now() + RETRY_AFTER < day_bounds(day)[1] + GIVE_UP_AFTER:
                wake = min(wake, self.clock.now() + RETRY_AFTER)
            await self._sleep_until(wake)

    async def _sleep_until(self, when: dt.datetime) -> None:
        while (left := (when - self.clock.now()).total_seconds()) > 0:
            await wait_event(self._wake, min(left, MAX_SLEEP_SECONDS))
            if self._wake.is_set():
                self._wake.clear()
                return

    def wake(self) -> None:
        """Look at the day now rather than after the sleep (tests, a changed clock)."""
        self._wake.set()
