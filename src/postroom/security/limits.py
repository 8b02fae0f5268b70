"""Connection limits, and the one line each protocol says when it turns a client away.

Owns counting open connections — in total and per client address key (see peer.py) — and
why a client is turned away (`Refusal`). The line said instead of the greeting is each
protocol's own (`RefusalRenderer`: smtp/replies.py, imap/wire/responses.py, pop3/wire.py),
handed in by app.py, so nothing here imports a protocol package.

Invariants: `admit` and `release` are synchronous and called on the event loop only, so
counts never race; every admitted connection is released exactly once (app.py does it in
a `finally`); an address in an exempt network never hits the per-address limit, but
every connection counts towards the total, which protects the process's file descriptors.
"""

from __future__ import annotations

import enum
import ipaddress
from collections import Counter
from collections.abc import Callable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Refusal(enum.Enum):
    """Why a connection is turned away before the greeting."""

    # Names the way out (security/bans.py), not the address or the time left.
    BANNED = ("too many failed logins from your address; try later"
              " (admin: postroom ban del ADDRESS)")
    TOO_MANY_FROM_ADDRESS = "too many connections from your address; try later"
    TOO_MANY_CONNECTIONS = "too many connections; try later"


# A protocol's whole answer sent instead of its greeting: (why, server hostname) → bytes.
RefusalRenderer = Callable[[Refusal, str], bytes]


def is_exempt(key: str, networks: Sequence[Network]) -> bool:
    """Is the client key (an address or an IPv6 /64) inside one of `networks`?"""
    try:
        network = ipaddress.ip_network(key, strict=False)
    except ValueError:
        return False
    return any(network.version == trusted.version and network.subnet_of(trusted)  # type: ignore[arg-type]
               for trusted in networks)


class ConnectionLimiter:
    """Open connections per address key and in total. A limit of 0 means unlimited."""

    def __init__(self, max_total: int, max_per_address: int,
                 exempt: Sequence[Network] = ()) -> None:
        self.max_total = max_total
        self.max_per_address = max_per_address
        self._exempt = tuple(exempt)
        self._per_address: Counter[str] = Counter()
        self.total = 0

    def admit(self, key: str | None) -> Refusal | None:
        """Count the connection and return None, or return why it may not open (and do
        not count it)."""
        if self.max_total and self.total >= self.max_total:
            return Refusal.TOO_MANY_CONNECTIONS
        if (key is not None and self.max_per_address
                and self._per_address[key] >= self.max_per_address
                and not is_exempt(key, self._exempt)):
            return Refusal.TOO_MANY_FROM_ADDRESS
        self.total += 1
        if key is not None:
            self._per_address[key] += 1
        return None

    def release(self, key: str | None) -> None:
        self.total -= 1
        if key is not None:
            self._per_address[key] -= 1
            if self._per_address[key] <= 0:
                del self._per_address[key]  # the Counter stays as small as the live set

    def open_from(self, key: str) -> int:
        return self._per_address[key]
