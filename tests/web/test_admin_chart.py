"""The admin dashboard's chart geometry and the admin lists' pagination (issue 21),
without a server: shapes stay inside the drawing whatever the counts; a page number from
the query is clamped, never an error."""

from __future__ import annotations

import datetime as dt

from starlette.requests import Request

from postroom.metrics import TrafficHour
from postroom.web.adminchart import HEIGHT, PLOT_BOTTOM, WIDTH, traffic_chart
from postroom.web.adminkit import PAGE_SIZE, paginate

START = dt.datetime(2026, 12, 7, tzinfo=dt.UTC)


def hours(*counts: tuple[int, int, int]) -> list[TrafficHour]:
    return [TrafficHour(START + dt.timedelta(hours=index), received, sent,
                        {"5.1.1": rejected} if rejected else {})
            for index, (received, sent, rejected) in enumerate(counts)]


def test_bars_fit_the_box_and_scale_to_the_peak() -> None:
    chart = traffic_chart(hours(*[(0, 0, 0)] * 22, (10**9, 5, 1), (40, 0, 7)))
    assert chart.peak == 10**9
    assert len(chart.bars) == 24 * 3
    for bar in chart.bars:
        assert bar.x >= 0 and bar.x + bar.width <= WIDTH
        assert 0 <= bar.y <= PLOT_BOTTOM and bar.y + bar.height <= PLOT_BOTTOM + 0.01
    tallest = max(chart.bars, key=lambda bar: bar.height)
    assert tallest.title == "22:00 received: 1000000000"
    assert max(label.y for label in chart.labels) <= HEIGHT


def test_an_empty_day_draws_flat_bars() -> None:
    chart = traffic_chart(hours(*[(0, 0, 0)] * 24))
    assert chart.peak == 0
    assert {bar.height for bar in chart.bars} == {0}


def test_bars_of_one_hour_do_not_reach_the_next() -> None:
    chart = traffic_chart(hours((1, 2, 3), (4, 5, 6)))
    first, second = chart.bars[:3], chart.bars[3:]
    assert max(bar.x + bar.width for bar in first) < min(bar.x for bar in second)


def request(query: str) -> Request:
    return Request({"type": "http", "method": "GET", "path": "/", "query_string":
                    query.encode(), "headers": []})


def test_pages_are_capped_and_clamped() -> None:
    items = list(range(PAGE_SIZE * 2 + 1))
    first = paginate(request(""), items)
    assert (first.page, first.pages, first.total) == (1, 3, len(items))
    assert list(first.items) == items[:PAGE_SIZE]
    assert list(paginate(request("page=3"), items).items) == [items[-1]]
    assert paginate(request("page=99999999999999"), items).page == 3
    assert paginate(request("page=-4"), items).page == 1
    assert paginate(request("page=x"), items).page == 1
    assert paginate(request(""), []).pages == 1
