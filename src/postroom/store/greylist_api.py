"""The `GreylistStore` role: the embedded spam filter's shared state (issue 18).

Owns the Protocol the services above `store/` use, and its rows: greylisting triplets and
the clients' successful retries (postgrey semantics, checks/greylist.py), and the spam
thresholds an account may set for itself (delivery/spamfiling.py). Both backends
implement it once in `store/sql/greylist.py`; in one database every node shares it.

Invariants: a triplet's `first_seen` is when its current delay started: an attempt after
the row went stale (not seen since `fresh_after`) starts it again, as postgrey's max-age
does; `passes` only grows while the row lives.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class GreylistEntry:
    client: str  # the client's network: IPv4 /24 ("192.0.2"), IPv6 /64 ("2001:db8:0:1")
    sender: str
    recipient: str
    first_seen: dt.datetime
    last_seen: dt.datetime
    passes: int  # attempts accepted after the delay


@dataclass(frozen=True, slots=True)
class GreylistClient:
    client: str
    passes: int  # successful retries of all its triplets (the auto-whitelist counts them)
    last_seen: dt.datetime


@dataclass(frozen=True, slots=True)
class SpamThresholds:
    """An account's own SA_TAG / SA_TAG2 / SA_KILL; None: the global value."""

    tag: float | None = None
    tag2: float | None = None
    kill: float | None = None

    @property
    def is_empty(self) -> bool:
        return self.tag is None and self.tag2 is None and self.kill is None


class GreylistStore(Protocol):
    async def greylist_seen(self, client: str, sender: str, recipient: str,
                            now: dt.datetime, fresh_after: dt.datetime) -> GreylistEntry:
        """Record one attempt of a triplet and return its row: new, or seen before
        `fresh_after`, it starts (again) at `now` with no passes."""
        ...

    async def greylist_passed(self, client: str, sender: str, recipient: str,
                              now: dt.datetime) -> int:
        """An attempt accepted after the delay: count it for the triplet and its client;
        the client's count now."""
        ...

    async def greylist_client(self, client: str, since: dt.datetime) -> GreylistClient | None:
        """The client's retry count, if it was seen since `since`."""
        ...

    async def list_greylist(self) -> list[GreylistEntry]: ...

    async def list_greylist_clients(self) -> list[GreylistClient]: ...

    async def delete_greylist(self, client: str) -> int:
        """Forget a client network's triplets and auto-whitelist entry; rows removed."""
        ...

    async def expire_greylist(self, before: dt.datetime) -> int:
        """Drop triplets and clients not seen since `before`; rows removed."""
        ...

    async def get_spam_thresholds(self, account_id: int) -> SpamThresholds | None: ...

    async def set_spam_thresholds(self, account_id: int, thresholds: SpamThresholds) -> None:
        """Store an account's thresholds; all None removes them."""
        ...

    async def list_spam_thresholds(self) -> list[tuple[str, SpamThresholds]]:
        """(address, thresholds) of every account that has its own."""
        ...
