"""The change feed's small queue (store/changes.py `ChangeQueue`): asyncio.Queue's
behaviour for what subscribers use, including a waiter cancelled just after being woken."""

from __future__ import annotations

import asyncio

import pytest

from postroom.store.api import Change
from postroom.store.changes import ChangeFeed, ChangeQueue


def _change(mailbox_id: int) -> Change:
    return Change(1, mailbox_id, frozenset({"append"}))


async def test_fifo_nowait_and_limits() -> None:
    queue = ChangeQueue(maxsize=2)
    assert queue.empty() and queue.qsize() == 0
    with pytest.raises(asyncio.QueueEmpty):
        queue.get_nowait()
    queue.put_nowait(_change(1))
    queue.put_nowait(_change(2))
    assert queue.full()
    with pytest.raises(asyncio.QueueFull):
        queue.put_nowait(_change(3))
    assert [queue.get_nowait().mailbox_id, (await queue.get()).mailbox_id] == [1, 2]


async def test_get_waits_for_a_put() -> None:
    queue = ChangeQueue(maxsize=10)
    first, second = asyncio.ensure_future(queue.get()), asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait(_change(7))
    queue.put_nowait(_change(8))
    got = await asyncio.wait_for(asyncio.gather(first, second), 5)
    assert sorted(change.mailbox_id for change in got) == [7, 8]


async def test_a_woken_getter_cancelled_passes_the_item_on() -> None:
    queue = ChangeQueue(maxsize=10)
    first, second = asyncio.ensure_future(queue.get()), asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait(_change(5))  # wakes `first` …
    first.cancel()  # … which is cancelled before it runs
    assert (await asyncio.wait_for(second, 5)).mailbox_id == 5
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_feed_drops_when_full_and_calls_on_change() -> None:
    feed = ChangeFeed()
    calls: list[int] = []
    with feed.subscribe(1) as subscription:
        subscription.on_change = lambda: calls.append(subscription.queue.qsize())
        for index in range(subscription.queue.maxsize + 5):
            feed.publish(_change(index))
        assert subscription.queue.full() and len(calls) == subscription.queue.maxsize
        assert len(subscription.drain()) == subscription.queue.maxsize
        assert subscription.queue.empty()
