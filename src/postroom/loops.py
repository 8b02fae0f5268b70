"""Which event loop a long-running process runs on.

Owns the choice between uvloop and asyncio's own loop, for `postroom serve` (cli/) and
for each SMTP worker process (workerprocess.py). A low module on purpose: both callers
sit at the top of the house, and neither may import the other for this.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable


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
