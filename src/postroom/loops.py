"""Which event loop a long-running process runs on.

Owns the choice between uvloop and asyncio's own loop, for `postroom serve` (cli/) and
for each SMTP worker process (workerprocess.py), how a background task is stopped
(`cancel_and_wait`, used by every service with a loop of its own) and how anything is
awaited with a time limit (`within`, `wait_event`). A low module on purpose: its callers
sit on every floor above it.

Invariants:
- Nothing here uses `asyncio.wait_for`, and nothing else should (ruff bans it): on
  Python 3.11 it loses a cancellation that arrives as the awaited thing finishes
  (CPython gh-86296, fixed only in 3.12), and a service being stopped then runs on.
  `within` and `wait_event` use `asyncio.timeout`, which counts cancellations.
- `cancel_and_wait` does not trust a task to end on the first cancel: psycopg_pool's
  wait for a connection has that same race (psycopg #1345, #1413), so a task whose
  cancel was lost is cancelled again every RECANCEL_SECONDS until it ends.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")
RECANCEL_SECONDS = 1.0  # a cancelled task still running after this had its cancel lost


def fast_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when the `speed` extra is installed, else None (asyncio's own).
    Only `serve` uses it: one-shot commands gain nothing from a faster loop.
    POSTROOM_EVENT_LOOP=asyncio keeps asyncio's loop although uvloop is installed (to
    rule the loop out when chasing a problem; the test suite runs `serve` on both)."""
    if os.environ.get("POSTROOM_EVENT_LOOP", "").strip().lower() == "asyncio":
        return None
    try:
        import uvloop  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    return uvloop.new_event_loop


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel a background task and wait until it has ended (its cancellation is not an
    error; anything else it raises is), cancelling it again while a library lost the
    cancel. Nothing to do for None. The caller's own cancellation propagates."""
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=RECANCEL_SECONDS)
    if not task.cancelled():
        task.result()  # what it raised, if anything


async def within(seconds: float | None, awaitable: Awaitable[T]) -> T:
    """`awaitable`'s result, or TimeoutError after `seconds` (None: no limit); a task or
    future given is cancelled at the limit. What `asyncio.wait_for` does, minus its lost
    cancellations on Python 3.11."""
    async with asyncio.timeout(seconds):
        return await awaitable


async def wait_event(event: asyncio.Event, seconds: float | None) -> bool:
    """Wait until `event` is set or `seconds` pass (None: no limit); whether it is set."""
    if event.is_set():
        return True
    try:
        await within(seconds, event.wait())
    except TimeoutError:
        return False
    return True
