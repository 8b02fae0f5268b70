"""metrics.py without a server: the traffic tally's hours (zero-filled, 24 of them, older
ones forgotten), bounded label values, the rejection reasons' names, and an exposition
prometheus_client's parser reads."""

from __future__ import annotations

import datetime as dt

from prometheus_client import Counter
from prometheus_client.parser import text_string_to_metric_families

from postroom import metrics
from postroom.metrics import (
    MAX_LABEL_VALUES,
    OTHER,
    TRAFFIC_HOURS,
    Traffic,
    _Children,
    reason_name,
)

START = dt.datetime(2026, 12, 7, 5, 30, tzinfo=dt.UTC).timestamp()


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def test_traffic_counts_per_hour_and_forgets_after_a_day() -> None:
    clock = Clock()
    traffic = Traffic(clock)
    traffic.note("received")
    traffic.note("received")
    traffic.note("rejected:5.1.1")
    clock.now += 3600
    traffic.note("sent")
    hours = traffic.hours()
    assert len(hours) == TRAFFIC_HOURS
    assert hours[-1].start == dt.datetime(2026, 12, 7, 6, 0, tzinfo=dt.UTC)
    assert (hours[-1].received, hours[-1].sent, hours[-1].rejected) == (0, 1, {})
    assert (hours[-2].received, hours[-2].rejected, hours[-2].rejected_total) == (
        2, {"5.1.1": 1}, 1)
    assert all(hour.received == hour.sent == 0 for hour in hours[:-2])
    clock.now += TRAFFIC_HOURS * 3600  # a quiet day later
    traffic.note("received")
    assert sum(hour.received + hour.sent for hour in traffic.hours()) == 1
    assert len(traffic._hours) == 1  # the old hours were dropped, not only hidden


def test_traffic_reasons_are_capped_per_hour() -> None:
    traffic = Traffic(Clock())
    for index in range(MAX_LABEL_VALUES + 10):
        traffic.note(f"rejected:5.9.{index}")
    (hour,) = [hour for hour in traffic.hours() if hour.rejected]
    assert len(hour.rejected) <= MAX_LABEL_VALUES + 1
    assert hour.rejected_total == MAX_LABEL_VALUES + 10
    assert hour.rejected[OTHER] >= 10


def test_label_values_are_bounded() -> None:
    from prometheus_client import CollectorRegistry

    counter = Counter("bounded_test", "test", ["name"], registry=CollectorRegistry())
    children = _Children(counter)
    for index in range(MAX_LABEL_VALUES + 5):
        children.get(f"value{index}").inc()
    children.get("value0").inc()
    values = {sample.labels["name"]: sample.value for sample in counter.collect()[0].samples
              if sample.name == "bounded_test_total"}
    assert len(values) == MAX_LABEL_VALUES + 1
    assert values[OTHER] == 5 and values["value0"] == 2


def test_reason_names() -> None:
    assert reason_name("5.1.1") == "unknown recipient"
    assert reason_name("5.5.2") == "protocol error"
    assert reason_name("5.9.9") == "5.9.9"


def test_exposition_parses() -> None:
    metrics.note_verdict("gtube", "refuse")
    metrics.note_outbound("delivered")
    metrics.set_queue(4, -3.0)  # a clock step back never shows a negative age
    body, content_type = metrics.exposition()
    assert content_type.startswith("text/plain")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(body.decode())
               for s in family.samples}
    assert samples[("postroom_filter_verdicts_total",
                    (("action", "refuse"), ("check", "gtube")))] >= 1
    assert samples[("postroom_outbound_deliveries_total", (("outcome", "delivered"),))] >= 1
    assert samples[("postroom_queue_size", ())] == 4
    assert samples[("postroom_queue_oldest_age_seconds", ())] == 0
