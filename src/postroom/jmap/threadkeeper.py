"""The thread keeper (issue 23): JMAP thread ids assigned shortly after mail arrives.

Owns `ThreadKeeper`, a task of the main process (ENABLE_JMAP with the web listener on)
that watches the change feed of every account (`ChangeFeed.watch_all`), notes the
accounts that got a message ("append": delivery, IMAP APPEND, COPY/MOVE targets, JMAP
imports) and, PAUSE_SECONDS after the first note of a quiet spell (so a burst of
deliveries is one round), runs jmap/threads.py's `assign_threads` for each.

Invariants:
- Delivery never waits for it: noting is a set insertion inside `publish`, after the
  commit; threading runs in this task, never in an SMTP transaction. Deliveries made by
  SMTP worker processes reach it through the main process's feed (workers.py), those of
  other PostgreSQL nodes through LISTEN/NOTIFY (each node's keeper may then thread the
  same account: the store keeps the first record, and both compute the same ids).
- It only makes the request-time catch-up (which stays) find nothing to do: answers are
  exact whether or not it has caught up, and ids never depend on who assigned them.
- A round threads at most ACCOUNTS_PER_ROUND accounts, oldest note first; the rest wait
  for the next round, one pause later. An account whose threading fails is logged and
  tried again RETRY_SECONDS later (its new mail meanwhile included); a failure never
  ends the task.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable

from postroom.jmap.threads import assign_threads
from postroom.loops import cancel_and_wait, wait_event
from postroom.runtime import Runtime
from postroom.store.api import Change
from postroom.store.errors import StorageFailure

log = logging.getLogger(__name__)

APPEND = "append"  # the feed's kind for a message added to a mailbox (store/changes.py)
PAUSE_SECONDS = 0.5  # from the first note to the round: a burst is threaded at once
ACCOUNTS_PER_ROUND = 50
RETRY_SECONDS = 30.0  # after a failure, before the account is tried again


class ThreadKeeper:
    def __init__(self, runtime: Runtime, *, pause: float = PAUSE_SECONDS,
                 retry: float = RETRY_SECONDS) -> None:  # fmt: skip
        self.runtime = runtime
        self.pause = pause
        self.retry = retry
        self._pending: dict[int, None] = {}  # accounts noted, oldest first (an ordered set)
        self._failed: dict[int, float] = {}  # account → loop time of its next try
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._unwatch: Callable[[], None] | None = None

    def start(self) -> None:
        self._unwatch = self.runtime.feed.watch_all(self.note)
        self._task = asyncio.create_task(self._run(), name="jmap-thread-keeper")

    async def stop(self) -> None:
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        task, self._task = self._task, None
        await cancel_and_wait(task)

    def note(self, change: Change) -> None:
        """The feed's callback: remember the account if a message arrived in it."""
        if APPEND in change.kinds and change.account_id not in self._failed:
            self._pending.setdefault(change.account_id, None)
            self._wake.set()

    async def run_round(self) -> int:
        """Thread the accounts due now (at most ACCOUNTS_PER_ROUND); how many Emails."""
        done = 0
        for account_id in self._due():
            try:
                done += await assign_threads(self.runtime, account_id)
            except StorageFailure as error:
                log.warning("JMAP threading of account %s paused: %s", account_id, error)
                self._failed[account_id] = self._now() + self.retry
            except Exception:  # a bug in one account must not stop the others
                log.exception("JMAP threading of account %s failed; retrying", account_id)
                self._failed[account_id] = self._now() + self.retry
        return done

    def _due(self) -> list[int]:
        now = self._now()
        for account_id, when in list(self._failed.items()):
            if when <= now:
                del self._failed[account_id]
                self._pending.setdefault(account_id, None)
        due = list(itertools.islice(self._pending, ACCOUNTS_PER_ROUND))
        for account_id in due:
            del self._pending[account_id]
        return due

    async def _run(self) -> None:
        while True:
            await self._wait()
            await asyncio.sleep(self.pause)  # let the burst finish: one round for all
            await self.run_round()

    async def _wait(self) -> None:
        """Until an account is noted, or a failed one's retry is due."""
        if self._pending:
            return
        self._wake.clear()
        timeout = max(0.0, min(self._failed.values()) - self._now()) if self._failed else None
        await wait_event(self._wake, timeout)

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()
