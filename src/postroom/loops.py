"""Which event loop a long-running process runs on.

Owns the choice between uvloop and asyncio's own loop, for `postroom serve` (cli/) and
for each SMTP worker process (workerprocess.py), and how a background task is stopped
(`cancel_and_wait`, used by every service with a loop of its own). A low module on
purpose: its callers sit on every floor above it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any


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
    error; anything else it raises is). Nothing to do for None."""
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise  # the caller itself is being cancelled: not ours to swallow
