"""TLS-RPT (RFC 8460) kept in the store: what outbound delivery learns about TLS with
each MX, counted in memory per UTC day and aggregation key and written in batches; and
the reports other senders send to our report address.

Owns `TlsOutcomeRecorder`, the `TlsOutcomeSink` app.py gives the queue worker when
ENABLE_TLSRPT is on, with its flush task, `TlsReportParser`, the "tlsrpt" parser of
reports/intake.py, and `summarise_received` (`postroom reports tls`). The daily report
is built from what the recorder stored (reports/tlsrptsend.py); received reports are
read by reports/tlsrptjson.py.

Invariants: `record` never blocks and never raises (outbound/tlsresults.py): it only
updates a dict on the loop. The dict holds at most `MAX_KEYS` distinct keys between
flushes, and at most `MAX_DAY_KEYS` distinct keys reach the store per UTC day (a set of
their hashes remembers which) — recipient domains, MX names and the policy text are
chosen by whoever mails us or whom we mail, so past either cap new keys are counted as
dropped (and logged once per flush), never stored; every field is cut to a bounded
length first. A failed write keeps
its counts for the next flush, within the same cap.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
from collections import Counter
from collections.abc import Sequence

from postroom.clock import Clock
from postroom.errors import BadSyntax
from postroom.loops import cancel_and_wait
from postroom.outbound.tlsresults import TlsOutcome
from postroom.reports.intake import TLSRPT, BadReport
from postroom.reports.tlsrptjson import MEDIA_JSON, load_report, parse_report
from postroom.store.tlsreports_api import ReceivedTlsPolicy, TlsOutcomeCount, TlsReportStore

log = logging.getLogger(__name__)

MAX_KEYS = 10_000  # distinct aggregation keys held between two flushes
MAX_DAY_KEYS = 100_000  # distinct aggregation keys stored per UTC day (rows of a report day)
FLUSH_SECONDS = 60.0
MAX_NAME = 255  # a DNS name, an IP address
MAX_DETAIL = 200  # failure-reason-code
MAX_POLICY_STRINGS = 50  # lines of an MTA-STS policy or TLSA records
MAX_POLICY_STRING = 1000

# (day, policy domain, policy type, policy strings, mx host, receiving ip, result, detail)
Key = tuple[dt.date, str, str, tuple[str, ...], str, str, str, str]


def _name(value: str) -> str:
    return value.strip().rstrip(".").lower()[:MAX_NAME]


def outcome_key(day: dt.date, outcome: TlsOutcome) -> Key:
    """The RFC 8460 §4.4 aggregation key of one outcome, every field bounded."""
    strings = tuple(text[:MAX_POLICY_STRING]
                    for text in outcome.policy_strings[:MAX_POLICY_STRINGS])
    return (day, _name(outcome.policy_domain), outcome.policy_type, strings,
            _name(outcome.mx_host), outcome.receiving_ip[:MAX_NAME],
            (outcome.failure or "")[:MAX_NAME], outcome.detail[:MAX_DETAIL])


class TlsOutcomeRecorder:
    """Counts outcomes in memory; `start` flushes them to the store every
    `flush_seconds`, and `stop` once more."""

    def __init__(self, store: TlsReportStore, clock: Clock, *, max_keys: int = MAX_KEYS,
                 max_day_keys: int = MAX_DAY_KEYS, flush_seconds: float = FLUSH_SECONDS
                 ) -> None:  # fmt: skip
        self._store = store
        self._clock = clock
        self._max_keys = max_keys
        self._max_day_keys = max_day_keys
        self._day_keys: dict[dt.date, set[int]] = {}  # hashes of the keys counted per day
        self._flush_seconds = flush_seconds
        self._counts: dict[Key, int] = {}
        self._dropped = 0
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def record(self, outcome: TlsOutcome) -> None:
        try:
            key = outcome_key(self._clock.now().astimezone(dt.UTC).date(), outcome)
            if key in self._counts:
                self._counts[key] += 1
            elif len(self._counts) < self._max_keys and self._has_room(key):
                self._counts[key] = 1
            else:
                self._dropped += 1
        except Exception:  # the invariant: reporting never fails a delivery
            log.exception("TLS-RPT: an outcome could not be counted")

    def _has_room(self, key: Key) -> bool:
        """Whether the key's day may take it: seen that day already, or under the cap."""
        day = key[0]
        seen = self._day_keys.get(day)
        if seen is None:  # a new day: the days before the previous one are done
            for old in [d for d in self._day_keys if d < day - dt.timedelta(days=1)]:
                del self._day_keys[old]
            seen = self._day_keys[day] = set()
        if hash(key) in seen:
            return True
        if len(seen) >= self._max_day_keys:
            return False
        seen.add(hash(key))
        return True

    @property
    def pending(self) -> int:
        """Distinct keys waiting for the next flush."""
        return len(self._counts)

    async def flush(self) -> int:
        """Write what was counted so far; returns the number of keys written."""
        async with self._lock:
            counts, self._counts = self._counts, {}
            dropped, self._dropped = self._dropped, 0
            if dropped:
                log.warning("TLS-RPT: %d session outcomes not counted: more than %d distinct"
                            " policy/MX keys since the last flush, or %d in a day", dropped,
                            self._max_keys, self._max_day_keys)
            if not counts:
                return 0
            rows = [TlsOutcomeCount(*key, count=count) for key, count in counts.items()]
            try:
                await self._store.add_tls_outcomes(rows)
            except Exception:
                log.exception("TLS-RPT: outcomes could not be stored; kept for the next try")
                self._merge_back(counts)
                return 0
            return len(rows)

    def _merge_back(self, counts: dict[Key, int]) -> None:
        for key, count in counts.items():
            if key in self._counts or len(self._counts) < self._max_keys:
                self._counts[key] = self._counts.get(key, 0) + count
            else:
                self._dropped += count

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="tlsrpt-flush")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._flush_seconds)
            await self.flush()

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        await self.flush()


class TlsReportParser:
    """Received TLS-RPT reports (already decompressed by the intake) into the store."""

    kind = TLSRPT

    def __init__(self, store: TlsReportStore) -> None:
        self._store = store

    def parse(self, data: bytes) -> list[ReceivedTlsPolicy]:
        try:  # `received` is set by `save`, which knows the time
            return parse_report(load_report(data, MEDIA_JSON), dt.datetime.min)
        except BadSyntax as error:
            raise BadReport(str(error)) from None

    async def save(self, parsed: list[ReceivedTlsPolicy], now: dt.datetime) -> str:
        policies = [dataclasses.replace(policy, received=now) for policy in parsed]
        first = policies[0]
        if not await self._store.add_received_tls_report(policies):
            return f"report {first.report_id!r} of {first.organization!r} was stored already"
        failed = sum(policy.failed for policy in policies)
        return (f"{first.organization!r} about {len(policies)} policies: "
                f"{sum(policy.successful for policy in policies)} sessions succeeded,"
                f" {failed} failed")


@dataclasses.dataclass(frozen=True, slots=True)
class ReceivedSummary:
    """What one sending organisation reported about one of our domains."""

    policy_domain: str
    organization: str
    reports: int
    successful: int
    failed: int
    failures: tuple[tuple[str, int], ...]  # result-type, sessions; most first


def summarise_received(policies: Sequence[ReceivedTlsPolicy]) -> list[ReceivedSummary]:
    """Received report policies summed per policy domain and sending organisation."""
    groups: dict[tuple[str, str], list[ReceivedTlsPolicy]] = {}
    for policy in policies:
        groups.setdefault((policy.policy_domain, policy.organization), []).append(policy)
    summaries = []
    for (domain, organization), group in sorted(groups.items()):
        failures: Counter[str] = Counter()
        for policy in group:
            failures.update(dict(policy.failures))
        summaries.append(ReceivedSummary(
            domain, organization, len({policy.report_id for policy in group}),
            sum(policy.successful for policy in group), sum(policy.failed for policy in group),
            tuple(failures.most_common())))
    return summaries
