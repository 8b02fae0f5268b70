"""Clients that stop reading: a connection whose output stalls is cut off.

Owns one defence every protocol shares without knowing about it. A client can pipeline
commands (or ask for a big message) and never read the answers; the server's writes then
wait in `StreamWriter.drain()`, which has no timeout of its own, and the connection would
be held forever — a slow-read attack that defeats the idle timeouts, which only watch
reads. asyncio tells the connection's protocol when the transport's buffer passes its high
water mark (`pause_writing`) and when it has drained (`resume_writing`); this module
wraps those two public protocol callbacks, and when writing stays paused for
`WRITE_STALL_TIMEOUT` the transport is aborted, so the pending `drain()` raises and the
session ends through its normal error path.

Invariant: the watch follows the connection through STARTTLS, because the TLS layer
reports its own flow control to the same application protocol.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("postroom.security")

# As long as the longest RFC command timeout a client may spend silent (SMTP's 5 minutes,
# RFC 5321 §4.5.3.2.7): a client that takes none of our output for that long is gone.
WRITE_STALL_TIMEOUT = 300.0


class StallWatch:
    # One per connection (10,000 IDLE clients, issue 8): no instance dict.
    __slots__ = ("_label", "_pause", "_protocol", "_resume", "_timeout", "_timer", "_transport")

    def __init__(self, writer: asyncio.StreamWriter, timeout: float, label: str) -> None:
        self._transport = writer.transport
        self._protocol: Any = writer.transport.get_protocol()
        self._timeout = timeout
        self._label = label
        self._timer: asyncio.TimerHandle | None = None
        self._pause = self._protocol.pause_writing
        self._resume = self._protocol.resume_writing
        # Instance attributes shadow the class's methods for this connection only.
        self._protocol.__dict__["pause_writing"] = self._on_pause
        self._protocol.__dict__["resume_writing"] = self._on_resume

    def _on_pause(self) -> None:
        self._pause()
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._timeout, self._abort)

    def _on_resume(self) -> None:
        self.cancel_timer()
        self._resume()

    def _abort(self) -> None:
        self._timer = None
        log.info("client=%s stopped reading for %ss: connection dropped", self._label,
                 self._timeout)
        self._transport.abort()

    def cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def stop(self) -> None:
        self.cancel_timer()
        for name in ("pause_writing", "resume_writing"):
            self._protocol.__dict__.pop(name, None)


def watch_stalls(writer: asyncio.StreamWriter, label: str,
                 timeout: float | None = None) -> StallWatch:
    return StallWatch(writer, WRITE_STALL_TIMEOUT if timeout is None else timeout, label)
