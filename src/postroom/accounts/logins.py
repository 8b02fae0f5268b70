"""Recent logins (issue 21): the history of successful logins each user sees on the
self-service page, and when each app password was last used.

Owns collecting logins as they happen and writing them in batches: a login only appends
to a list in memory; one transaction writes everything gathered every FLUSH_SECONDS (or
sooner when MAX_PENDING are waiting), so an IMAP client that logs in every minute costs no
store round trip of its own.

Invariants:
- The history keeps the newest KEEP_PER_ACCOUNT logins per account (older ones are
  deleted by the write that adds new ones).
- Which listener and which client come from the connection task's context
  (security/peer.py: `LISTENER`, `CLIENT_ADDRESS`), so the protocols need no code of
  their own; the client is the ban key (an IPv6 client's /64).
- Best effort: a failed write is logged and dropped (the history is informative, never
  used to decide anything); `close` writes what waits, at shutdown. At most MAX_PENDING
  records wait: beyond that, new ones are dropped until the next write.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging

from postroom.clock import Clock, SystemClock
from postroom.loops import cancel_and_wait
from postroom.security.peer import current_client, current_listener
from postroom.store.credentials_api import CredentialStore, LoginRecord

log = logging.getLogger("postroom.accounts")

KEEP_PER_ACCOUNT = 50
FLUSH_SECONDS = 5.0
MAX_PENDING = 1000
# Protocols that authenticate every request (JMAP over HTTP) would fill the history with
# one client's polling: there, the same account, client and credential count once within
# this many seconds. Remembered for at most REPEATS_REMEMBERED such logins.
REPEAT_WINDOWS = {"jmap": 900.0}
REPEATS_REMEMBERED = 10_000


class LoginHistory:
    def __init__(self, store: CredentialStore, clock: Clock | None = None,
                 flush_seconds: float = FLUSH_SECONDS) -> None:
        self._store = store
        self._clock = clock or SystemClock()
        self._flush_seconds = flush_seconds
        self._pending: list[LoginRecord] = []
        self._used: dict[int, dt.datetime] = {}
        self._writer: asyncio.Task[None] | None = None
        self._last_seen: dict[tuple[int, str, str, str], dt.datetime] = {}

    def record(self, account_id: int, credential: str, app_password_id: int | None = None,
               protocol: str | None = None) -> None:
        """Note one successful login (no I/O here)."""
        if len(self._pending) >= MAX_PENDING:
            return
        now = self._clock.now()
        record = LoginRecord(account_id, now, protocol or current_listener(),
                             current_client() or "", credential)
        if app_password_id is not None:
            self._used[app_password_id] = now
        if self._is_repeat(record):
            return
        self._pending.append(record)
        if self._writer is None or self._writer.done():
            delay = 0.0 if len(self._pending) >= MAX_PENDING else self._flush_seconds
            self._writer = asyncio.get_running_loop().create_task(self._write_later(delay))

    def _is_repeat(self, record: LoginRecord) -> bool:
        """A per-request protocol's login already in the history within its window."""
        window = REPEAT_WINDOWS.get(record.protocol)
        if window is None:
            return False
        key = (record.account_id, record.protocol, record.client, record.credential)
        last = self._last_seen.get(key)
        if last is not None and (record.at - last).total_seconds() < window:
            return True
        if len(self._last_seen) >= REPEATS_REMEMBERED:
            self._last_seen.clear()  # forgetting only lets one more entry through
        self._last_seen[key] = record.at
        return False

    async def flush(self) -> None:
        """Write what waits now (the self-service page calls this before showing the
        history, so the user's own login is in it)."""
        pending, self._pending = self._pending, []
        used, self._used = self._used, {}
        if not pending and not used:
            return
        try:
            await self._store.record_logins(pending, KEEP_PER_ACCOUNT, sorted(used.items()))
        except Exception as error:  # informative only: never fail a login over it
            log.warning("login history not written (%d logins): %s", len(pending), error)

    async def recent(self, account_id: int, limit: int = KEEP_PER_ACCOUNT
                     ) -> list[LoginRecord]:
        await self.flush()
        return await self._store.recent_logins(account_id, limit)

    async def close(self) -> None:
        if self._writer is not None and not self._writer.done():
            with contextlib.suppress(Exception):
                await cancel_and_wait(self._writer)
        await self.flush()

    async def _write_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        await self.flush()
