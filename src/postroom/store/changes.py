"""The change feed: how one session learns what another (or SMTP delivery) changed.

Owns in-process fan-out of `Change` events per account. Store implementations publish
after each commit; IMAP sessions (IDLE, NOOP, command boundaries) and POP3 subscribe.
A subscriber only learns *that* a mailbox changed and re-reads the store, so a missed or
coalesced event never loses information. The PostgreSQL backend (issue 10) feeds the same
object from LISTEN/NOTIFY so changes on other nodes arrive the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from postroom.store.api import Change


@dataclass(slots=True, kw_only=True)
class WriteEffects:
    """What one write transaction changed, acted on only after its COMMIT: the feed
    events to publish and the blobs to release if nothing references them any more.
    Each backend's transaction object extends it with its connection."""

    kinds: dict[tuple[int, int], set[str]] = field(default_factory=lambda: defaultdict(set))
    blobs: set[str] = field(default_factory=set)
    modseqs: dict[tuple[int, int], int] = field(default_factory=dict)

    def changed(self, account_id: int, mailbox_id: int, kind: str, modseq: int = 0) -> None:
        """`modseq`: the mailbox's HIGHESTMODSEQ after this change, 0 when not known (the
        change is then published without one, and subscribers re-read)."""
        self.kinds[(account_id, mailbox_id)].add(kind)
        if modseq:
            self.modseqs[(account_id, mailbox_id)] = modseq

    def changes(self) -> list[Change]:
        return [Change(a, m, frozenset(kinds), self.modseqs.get((a, m), 0))
                for (a, m), kinds in self.kinds.items()]  # fmt: skip

class ChangeQueue:
    """The part of `asyncio.Queue` a subscriber uses (get, get_nowait, put_nowait, empty,
    full, qsize, maxsize), without asyncio.Queue's four deques and Event: about 3 KiB less
    per IMAP session, which matters at 10,000 IDLE sessions (issue 8)."""

    __slots__ = ("_getters", "_items", "maxsize")

    def __init__(self, maxsize: int) -> None:
        self._items: list[Change] = []
        self._getters: list[asyncio.Future[None]] = []
        self.maxsize = maxsize

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return len(self._items) >= self.maxsize

    def put_nowait(self, change: Change) -> None:
        if self.full():
            raise asyncio.QueueFull
        self._items.append(change)
        self._wake_one()

    def get_nowait(self) -> Change:
        if not self._items:
            raise asyncio.QueueEmpty
        return self._items.pop(0)

    async def get(self) -> Change:
        while not self._items:
            getter = asyncio.get_running_loop().create_future()
            self._getters.append(getter)
            try:
                await getter
            except BaseException:
                # Cancelled, perhaps just after being woken: pass the wake-up on.
                getter.cancel()
                with contextlib.suppress(ValueError):
                    self._getters.remove(getter)
                if self._items:
                    self._wake_one()
                raise
        return self._items.pop(0)

    def _wake_one(self) -> None:
        while self._getters:
            getter = self._getters.pop(0)
            if not getter.done():
                getter.set_result(None)
                return


class Subscription:
    """A queue of changes for one account; use as a context manager to unsubscribe."""

    def __init__(self, feed: ChangeFeed, account_id: int) -> None:
        self._feed = feed
        self.account_id = account_id
        self.queue = ChangeQueue(maxsize=1024)
        # Called after a change is queued: lets a session that waits on its socket (IMAP
        # IDLE) be woken without a task per session blocked in `queue.get()`.
        self.on_change: Callable[[], None] | None = None

    def deliver(self, change: Change) -> None:
        if self.queue.full():
            # The reader is behind; it re-reads the store anyway, so one pending event
            # per mailbox is enough.
            return
        self.queue.put_nowait(change)
        if self.on_change is not None:
            self.on_change()

    def drain(self) -> list[Change]:
        items = []
        while not self.queue.empty():
            items.append(self.queue.get_nowait())
        return items

    def close(self) -> None:
        self._feed.unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ChangeFeed:
    def __init__(self) -> None:
        self._subscribers: dict[int, set[Subscription]] = defaultdict(set)
        self._watchers: list[Callable[[Change], None]] = []
        # Changes published so far: a read begun when this was N has seen the commit of
        # every change published before it (imap/refreshshare.py's shared mailbox rows).
        self.published = 0

    def watch_all(self, callback: Callable[[Change], None]) -> Callable[[], None]:
        """Call `callback` with every change of every account (a process-wide service,
        such as JMAP's thread keeper); returns what stops it. It runs inside `publish`,
        after a commit: it must be quick and must not raise."""
        self._watchers.append(callback)

        def stop() -> None:
            if callback in self._watchers:
                self._watchers.remove(callback)

        return stop

    def subscribe(self, account_id: int) -> Subscription:
        subscription = Subscription(self, account_id)
        self._subscribers[account_id].add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers[subscription.account_id].discard(subscription)

    def publish(self, change: Change) -> None:
        self.published += 1
        for subscription in tuple(self._subscribers.get(change.account_id, ())):
            subscription.deliver(change)
        for watcher in tuple(self._watchers):
            watcher(change)
