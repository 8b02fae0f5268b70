"""The change feed: how one session learns what another (or SMTP delivery) changed.

Owns in-process fan-out of `Change` events per account. Store implementations publish
after each commit; IMAP sessions (IDLE, NOOP, command boundaries) and POP3 subscribe.
A subscriber only learns *that* a mailbox changed and re-reads the store, so a missed or
coalesced event never loses information. The PostgreSQL backend (issue 10) feeds the same
object from LISTEN/NOTIFY so changes on other nodes arrive the same way.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

from postroom.store.api import Change


class Subscription:
    """A queue of changes for one account; use as a context manager to unsubscribe."""

    def __init__(self, feed: ChangeFeed, account_id: int) -> None:
        self._feed = feed
        self.account_id = account_id
        self.queue: asyncio.Queue[Change] = asyncio.Queue(maxsize=1024)

    def deliver(self, change: Change) -> None:
        if self.queue.full():
            # The reader is behind; it re-reads the store anyway, so one pending event
            # per mailbox is enough.
            return
        self.queue.put_nowait(change)

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

    def subscribe(self, account_id: int) -> Subscription:
        subscription = Subscription(self, account_id)
        self._subscribers[account_id].add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers[subscription.account_id].discard(subscription)

    def publish(self, change: Change) -> None:
        for subscription in tuple(self._subscribers.get(change.account_id, ())):
            subscription.deliver(change)
