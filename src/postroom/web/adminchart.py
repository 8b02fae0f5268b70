"""The dashboard's traffic chart (issue 21): 24 hourly bar groups drawn as inline SVG on
the server, so the page needs no JavaScript.

Owns the geometry only (sans-IO: numbers in, shapes out); templates/admin_dashboard.html
draws the shapes. Colours are SVG presentation attributes, not `style`, because the
Content-Security-Policy forbids inline styles.

Invariants: every shape lies inside the WIDTH × HEIGHT box whatever the counts (the
scale is the largest count, at least 1); bars of one hour never overlap the next hour's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from postroom.metrics import TrafficHour

WIDTH = 720
HEIGHT = 200
PLOT_TOP = 10
PLOT_BOTTOM = 170  # the baseline; labels below it
LEFT = 40
SERIES = (("received", "#2b6cb0"), ("sent", "#2f855a"), ("rejected", "#c53030"))


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    fill: str
    title: str  # the tooltip: "14:00 received: 12"


@dataclass(frozen=True, slots=True)
class Label:
    x: float
    y: float
    text: str


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    bars: tuple[Bar, ...]
    labels: tuple[Label, ...]
    peak: int  # the count the top of the plot stands for
    legend: tuple[tuple[str, str], ...] = SERIES


def traffic_chart(hours: Sequence[TrafficHour]) -> Chart:
    """Bars for received, sent and rejected per hour, oldest hour on the left."""
    counts = [(hour.received, hour.sent, hour.rejected_total) for hour in hours]
    peak = max((count for triple in counts for count in triple), default=0)
    scale = (PLOT_BOTTOM - PLOT_TOP) / max(peak, 1)
    slot = (WIDTH - LEFT) / max(len(hours), 1)
    bar_width = slot * 0.8 / len(SERIES)
    bars: list[Bar] = []
    labels: list[Label] = [Label(4, PLOT_TOP + 10, str(peak)), Label(4, PLOT_BOTTOM, "0")]
    for index, (hour, triple) in enumerate(zip(hours, counts, strict=True)):
        left = LEFT + index * slot + slot * 0.1
        when = hour.start.strftime("%H:00")
        for series, ((name, fill), count) in enumerate(zip(SERIES, triple, strict=True)):
            height = count * scale
            bars.append(Bar(round(left + series * bar_width, 2),
                            round(PLOT_BOTTOM - height, 2), round(bar_width, 2),
                            round(height, 2), fill, f"{when} {name}: {count}"))
        if index % 3 == 0:
            labels.append(Label(round(left, 2), PLOT_BOTTOM + 18, when))
    return Chart(WIDTH, HEIGHT, tuple(bars), tuple(labels), peak)
