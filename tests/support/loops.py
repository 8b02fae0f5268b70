"""Which event loop the servers under test run on.

asyncio's own by default; POSTROOM_TEST_LOOP=uvloop runs them (AppThread, pytest-asyncio
tests and `postroom serve` subprocesses alike) on uvloop, the optional `speed` extra, so
`make test` can prove the protocol suites pass on both loops.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

LOOP_ENV = "POSTROOM_TEST_LOOP"

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def is_uvloop_chosen() -> bool:
    return os.environ.get(LOOP_ENV, "asyncio").strip().lower() == "uvloop"


def chosen_loop_factory() -> LoopFactory:
    if not is_uvloop_chosen():
        return asyncio.new_event_loop
    import uvloop  # the `speed` extra; a clear ImportError when it is missing

    return uvloop.new_event_loop


def serve_loop_env() -> dict[str, str]:
    """What a `postroom serve` subprocess needs to run on the chosen loop (serve picks
    uvloop by itself whenever it is installed)."""
    return {"POSTROOM_EVENT_LOOP": "uvloop" if is_uvloop_chosen() else "asyncio"}
