"""Prometheus metrics and the traffic tally of this process (issue 21).

Owns every metric postroom exports, their one registry (`REGISTRY`, rendered by
web/health.py at `/metrics`), and the only import of prometheus_client
(tests/unit/test_layering.py). The code that sees an event calls one `note_*` function
here; nothing else names a metric. Alongside, `TRAFFIC` keeps hourly counts of mail
received, sent and rejected (by reason) over the last 24 hours for the admin dashboard.

Invariants:
- Label values come from closed sets (listener names, check names, IMAP command classes,
  RFC 3463 status codes, outcome names), and each label is capped anyway at
  `MAX_LABEL_VALUES` distinct values, past which a value is counted as "other": no label
  explosion, whatever a client sends.
- Recording is a dict lookup and an increment on a pre-bound child: nothing is computed
  or allocated per event beyond that, so the hot paths do not get measurably slower.
- Gauges that come from the store (queue size and age) are set by the scraper just
  before rendering (`set_queue`), never polled in the background.
- Counts are per process. With SMTP_PROCESSES > 1 the SMTP sessions run in worker
  processes, whose counts stay there: `/metrics` (served by the main process) shows the
  main process's own listeners (IMAP, POP3, ManageSieve, the queue, the web) and no SMTP
  worker's (README, "Metrics and health").
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.metrics import MetricWrapperBase

MAX_LABEL_VALUES = 64  # distinct values per label before "other"
OTHER = "other"
TRAFFIC_HOURS = 24

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)  # CPU, memory, open file descriptors
PlatformCollector(registry=REGISTRY)

CONNECTIONS = Counter("postroom_connections", "Connections accepted, by listener",
                      ["listener"], registry=REGISTRY)
CONNECTIONS_REFUSED = Counter(
    "postroom_connections_refused", "Connections refused before the greeting (bans and"
    " connection limits), by listener and reason", ["listener", "reason"], registry=REGISTRY)
OPEN_CONNECTIONS = Gauge("postroom_open_connections", "Connections open now, by listener",
                         ["listener"], registry=REGISTRY)
MESSAGES_RECEIVED = Counter(
    "postroom_messages_received", "Messages accepted over SMTP (the 250 after the body),"
    " by mode (mx, submission, submissions)", ["mode"], registry=REGISTRY)
SMTP_REJECTIONS = Counter(
    "postroom_smtp_rejections", "SMTP 4xx/5xx replies refusing a client's command, by"
    " reply code and RFC 3463 enhanced status (the reason)", ["code", "status"],
    registry=REGISTRY)
OUTBOUND = Counter("postroom_outbound_deliveries", "Outbound delivery attempts per"
                   " recipient, by outcome (delivered, deferred, bounced)", ["outcome"],
                   registry=REGISTRY)
QUEUE_SIZE = Gauge("postroom_queue_size", "Recipients waiting in the outbound queue",
                   registry=REGISTRY)
QUEUE_OLDEST_AGE = Gauge("postroom_queue_oldest_age_seconds", "Age of the oldest entry in"
                         " the outbound queue (0 when empty)", registry=REGISTRY)
LOGIN_FAILURES = Counter("postroom_login_failures", "Failed logins (IMAP, POP3, SMTP AUTH,"
                         " ManageSieve, web console)", registry=REGISTRY)
FILTER_VERDICTS = Counter("postroom_filter_verdicts", "Verdicts of the inbound checks, by"
                          " check and action", ["check", "action"], registry=REGISTRY)
SMTP_TRANSACTION_SECONDS = Histogram(
    "postroom_smtp_transaction_seconds", "An SMTP mail transaction, MAIL FROM to the reply"
    " after the body", ["mode"], registry=REGISTRY,
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0))
IMAP_COMMAND_SECONDS = Histogram(
    "postroom_imap_command_seconds", "IMAP command handling time, by command (IDLE and"
    " STARTTLS excluded)", ["command"], registry=REGISTRY,
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
             10.0))


class _Children:
    """The pre-bound children of one labelled metric, each label capped at
    MAX_LABEL_VALUES distinct values."""

    __slots__ = ("_children", "_metric", "_seen")

    def __init__(self, metric: MetricWrapperBase) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], MetricWrapperBase] = {}
        self._seen: list[set[str]] = []

    def get(self, *values: str) -> Any:  # a Counter, Gauge or Histogram child
        child = self._children.get(values)
        if child is None:
            child = self._bind(values)
        return child

    def _bind(self, values: tuple[str, ...]) -> MetricWrapperBase:
        while len(self._seen) < len(values):
            self._seen.append(set())
        bounded = tuple(self._bounded(index, value) for index, value in enumerate(values))
        child = self._metric.labels(*bounded)
        if bounded == values:
            self._children[values] = child
        return child

    def _bounded(self, index: int, value: str) -> str:
        seen = self._seen[index]
        if value in seen:
            return value
        if len(seen) >= MAX_LABEL_VALUES:
            return OTHER
        seen.add(value)
        return value


_connections = _Children(CONNECTIONS)
_refused = _Children(CONNECTIONS_REFUSED)
_open = _Children(OPEN_CONNECTIONS)
_received = _Children(MESSAGES_RECEIVED)
_rejections = _Children(SMTP_REJECTIONS)
_outbound = _Children(OUTBOUND)
_verdicts = _Children(FILTER_VERDICTS)
_transactions = _Children(SMTP_TRANSACTION_SECONDS)
_imap = _Children(IMAP_COMMAND_SECONDS)

# The reasons the dashboard names, by RFC 3463 status (detail codes as postroom uses them).
REASON_NAMES = {
    "5.1.1": "unknown recipient", "5.7.1": "refused by policy or filter",
    "4.7.1": "try later (greylist, filter)", "5.7.23": "SPF", "5.7.26": "DMARC",
    "5.7.27": "null MX", "5.2.2": "mailbox full", "4.2.2": "mailbox full",
    "5.3.4": "message too big", "4.5.3": "too many recipients", "5.7.0": "policy",
    "4.7.0": "policy (try later)", "5.7.8": "authentication failed",
    "5.4.6": "mail loop", "5.6.0": "bad content", "4.3.0": "local error",
    "4.3.1": "storage full", "5.7.10": "REQUIRETLS",
}


def reason_name(status: str) -> str:
    """A person's words for a rejection reason (`status`: its RFC 3463 code)."""
    if status in REASON_NAMES:
        return REASON_NAMES[status]
    if status.startswith(("5.5.", "4.5.")):
        return "protocol error"
    return status or "unknown"


# -- the traffic tally -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrafficHour:
    start: dt.datetime  # UTC, on the hour
    received: int = 0
    sent: int = 0
    rejected: dict[str, int] = field(default_factory=dict)  # RFC 3463 status → count

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())


class Traffic:
    """Hourly counts of mail received, sent and rejected by reason, over the last 24
    hours, kept in memory by this process (what W2's dashboard charts)."""

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        self._now = now
        self._hours: dict[int, Tally[str]] = {}
        self._lock = threading.Lock()  # the queue and sessions may note from threads

    def note(self, kind: str) -> None:
        """`kind`: "received", "sent", or "rejected:<status>"."""
        hour = int(self._now() // 3600)
        with self._lock:
            tally = self._hours.get(hour)
            if tally is None:
                tally = self._hours[hour] = Tally()
                self._forget_before(hour - TRAFFIC_HOURS + 1)
            if len(tally) < MAX_LABEL_VALUES or kind in tally:
                tally[kind] += 1
            else:
                tally["rejected:" + OTHER] += 1

    def _forget_before(self, hour: int) -> None:
        for old in [known for known in self._hours if known < hour]:
            del self._hours[old]

    def hours(self) -> list[TrafficHour]:
        """The last 24 hours, oldest first, the current (partial) hour last; hours
        without traffic are there with zeros."""
        current = int(self._now() // 3600)
        with self._lock:
            snapshot = {hour: dict(tally) for hour, tally in self._hours.items()}
        return [_hour(hour, snapshot.get(hour, {}))
                for hour in range(current - TRAFFIC_HOURS + 1, current + 1)]


def _hour(hour: int, tally: dict[str, int]) -> TrafficHour:
    rejected = {kind.removeprefix("rejected:"): count for kind, count in tally.items()
                if kind.startswith("rejected:")}
    return TrafficHour(dt.datetime.fromtimestamp(hour * 3600, dt.UTC),
                       tally.get("received", 0), tally.get("sent", 0), rejected)


TRAFFIC = Traffic()


# -- recording (one call at each place that sees the event) --------------------------------


def note_connection_open(listener: str) -> None:
    _connections.get(listener).inc()
    _open.get(listener).inc()


def note_connection_closed(listener: str) -> None:
    _open.get(listener).dec()


def note_connection_refused(listener: str, reason: str) -> None:
    _refused.get(listener, reason).inc()


def note_smtp_rejection(code: int, status: str) -> None:
    _rejections.get(str(code), status or "-").inc()
    TRAFFIC.note("rejected:" + (status or "-"))


def note_smtp_transaction(mode: str, code: int, status: str, seconds: float) -> None:
    """The reply after a message's body: accepted (2xx) or rejected."""
    _transactions.get(mode).observe(seconds)
    if code < 400:
        _received.get(mode).inc()
        TRAFFIC.note("received")
    else:
        note_smtp_rejection(code, status)


def note_outbound(outcome: str) -> None:
    """"delivered", "deferred" or "bounced", per recipient."""
    _outbound.get(outcome).inc()
    if outcome == "delivered":
        TRAFFIC.note("sent")


def note_login_failure() -> None:
    LOGIN_FAILURES.inc()


def note_verdict(check: str, action: str) -> None:
    _verdicts.get(check, action).inc()


def note_imap_command(command: str, seconds: float) -> None:
    _imap.get(command).observe(seconds)


def set_queue(size: int, oldest_age_seconds: float) -> None:
    QUEUE_SIZE.set(size)
    QUEUE_OLDEST_AGE.set(max(0.0, oldest_age_seconds))


def exposition() -> tuple[bytes, str]:
    """The text exposition of every metric, and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
