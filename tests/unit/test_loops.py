"""loops.py's waits: a background task stops although a library lost its first cancel
(psycopg_pool on Python 3.11 does, under load), and a wait with a time limit never loses
a cancellation that arrives as what it waits for completes (asyncio.wait_for on 3.11)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from postroom import loops
from postroom.loops import cancel_and_wait, wait_event, within


async def test_a_task_that_lost_its_cancel_is_cancelled_again(
        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setattr(loops, "RECANCEL_SECONDS", 0.05)
    rounds = 0

    async def swallows_the_first_cancel() -> None:
        nonlocal rounds
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)  # the library race: the cancel is gone, it runs on
        while True:
            rounds += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(swallows_the_first_cancel())
    await asyncio.sleep(0)
    async with asyncio.timeout(5):
        await cancel_and_wait(task)
    assert task.cancelled() and rounds > 0


async def test_cancel_and_wait_raises_what_the_task_raised() -> None:
    async def fails_on_cancel() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise ValueError("broken cleanup") from None

    task = asyncio.create_task(fails_on_cancel())
    await asyncio.sleep(0)
    with pytest.raises(ValueError, match="broken cleanup"):
        await cancel_and_wait(task)
    await cancel_and_wait(None)  # nothing to stop


async def test_the_callers_own_cancellation_goes_through() -> None:
    stubborn = asyncio.create_task(asyncio.sleep(3600))
    stopper = asyncio.create_task(cancel_and_wait(stubborn))
    await asyncio.sleep(0)
    stopper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopper
    await cancel_and_wait(stubborn)


async def test_a_cancel_arriving_as_the_event_is_set_is_kept() -> None:
    """The race asyncio.wait_for loses on 3.11: the event set and the task cancelled in
    the same loop iteration. The waiter must end cancelled, not run on."""
    for _ in range(50):
        event = asyncio.Event()
        ran_on = False

        async def waiter(event: asyncio.Event = event) -> None:
            nonlocal ran_on
            await wait_event(event, 30)
            ran_on = True
            await asyncio.sleep(3600)

        task = asyncio.create_task(waiter())
        await asyncio.sleep(0)
        event.set()
        task.cancel()
        await asyncio.sleep(0)
        async with asyncio.timeout(5):
            await asyncio.wait({task})
        assert task.cancelled() and not ran_on


async def test_wait_event_and_within_limits() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    event.set()
    assert await wait_event(event, 0) is True
    assert await within(None, asyncio.sleep(0, "done")) == "done"
    slow = asyncio.ensure_future(asyncio.sleep(3600))
    with pytest.raises(TimeoutError):
        await within(0.01, slow)
    assert slow.cancelled()  # what it waited for is cancelled at the limit
