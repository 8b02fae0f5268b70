"""A short-lived cache of per-account settings that every delivery reads: the account's
own spam thresholds, whether its learning filter is trained, its active Sieve script
(delivery/spamfiling.py, junk/service.py, accounts/sievescripts.py).

Owns the one rule they share: a value read from the store is reused for at most `ttl`
seconds (5 by default) and forgotten at once when this process changes it (`forget`);
a change made by another process (the CLI, another node) is seen within `ttl`. Bounded:
at most `size` accounts, least recently used dropped. Each entry saves a store read per
recipient per message, the difference between an inbound message costing three point
reads or none for an account that never set anything.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class AccountCache(Generic[T]):
    def __init__(self, ttl: float = 5.0, size: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.ttl = ttl
        self.size = size
        self._clock = clock
        self._entries: OrderedDict[int, tuple[float, T]] = OrderedDict()

    async def get(self, account_id: int, load: Callable[[int], Awaitable[T]]) -> T:
        now = self._clock()
        entry = self._entries.get(account_id)
        if entry is not None and entry[0] > now:
            return entry[1]
        value = await load(account_id)
        self._entries[account_id] = (now + self.ttl, value)
        self._entries.move_to_end(account_id)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return value

    def forget(self, account_id: int) -> None:
        self._entries.pop(account_id, None)
