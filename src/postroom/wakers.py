"""Reads a session can be woken from: shutdown for every protocol, news for IMAP.

Owns `Waker`, with which a session awaits its socket directly (with a deadline) and is
woken by a cancellation of that read, and `Wakers`, a server's live sessions with the
one task that wakes them all when `runtime.shutting_down` is set.

Why (issue 22): the alternative, per read, is a task for the read and a task waiting for
shutdown under `asyncio.wait`: two tasks made, scheduled and cancelled for every SMTP
command and every POP3 RETR. A read through a Waker makes no task; the one watcher per
server is made when its first session starts and ends with its last.

Invariants:
- `read` returns None only when this waker woke it; any other cancellation of the
  session's task (a drain deadline at shutdown, App.stop) propagates, counted with
  `Task.uncancel` the way `asyncio.timeout` counts its own.
- A read that is not `wakeable` (an SMTP body in flight) is never interrupted: shutdown
  waits for it to end; the session checks `shutting_down` before its next read.
- Data that arrived while the read was being cancelled stays in the StreamReader's
  buffer for the next read.
- A waker belongs to the task that made it: the connection's task.
"""

from __future__ import annotations

import asyncio


class Waker:
    """One session's interruptible read (module doc)."""

    __slots__ = ("_is_reading", "_is_woken", "_task")

    def __init__(self) -> None:
        task = asyncio.current_task()
        assert task is not None, "a session runs in its connection's task"
        self._task = task
        self._is_reading = False
        self._is_woken = False

    def wake(self) -> None:
        """Interrupt the read in progress, if it may be; a no-op otherwise."""
        if self._is_reading and not self._is_woken:
            self._is_woken = True
            self._task.cancel()

    async def read(self, reader: asyncio.StreamReader, size: int, seconds: float, *,
                   wakeable: bool = True) -> bytes | None:
        """Up to `size` bytes (b"" at EOF); None when woken first; TimeoutError when
        nothing came within `seconds`."""
        cancelling = self._task.cancelling()
        self._is_reading = wakeable
        try:
            async with asyncio.timeout(seconds):
                return await reader.read(size)
        except asyncio.CancelledError:
            if self._is_woken and self._task.uncancel() <= cancelling:
                return None
            raise
        finally:
            self._is_reading = False
            self._is_woken = False


class Wakers:
    """A server's live sessions' wakers, all woken once `shutting_down` is set."""

    __slots__ = ("_shutting_down", "_wakers", "_watch")

    def __init__(self, shutting_down: asyncio.Event) -> None:
        self._shutting_down = shutting_down
        self._wakers: set[Waker] = set()
        self._watch: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._wakers)

    @property
    def is_watching(self) -> bool:
        """A watcher task is alive (there are sessions)."""
        return self._watch is not None

    def add(self, waker: Waker) -> None:
        self._wakers.add(waker)
        if self._watch is None:
            self._watch = asyncio.ensure_future(self._wake_all_at_shutdown())

    def discard(self, waker: Waker) -> None:
        self._wakers.discard(waker)
        if not self._wakers and self._watch is not None:
            self._watch.cancel()
            self._watch = None

    async def _wake_all_at_shutdown(self) -> None:
        await self._shutting_down.wait()
        for waker in tuple(self._wakers):
            waker.wake()
