"""The in-process DNS cache every consumer shares: SPF, DKIM, DMARC, MX routing, DNSBL.

Owns: `CachingResolver`, a `Resolver` (dns/resolver.py) over an `AnswerSource` (the
`LiveResolver`), and `with_cache`, which app.py uses to put one in front of the live
resolver when DNS_CACHE_SIZE > 0.

Invariants:
- an answer is reused for its TTL (the smallest on its CNAME chain and RRset), raised to
  `MIN_TTL` and capped at `MAX_TTL`;
- NXDOMAIN and NODATA are reused for the negative TTL, min(SOA TTL, SOA MINIMUM) (RFC 2308
  §5), capped at `MAX_NEGATIVE_TTL`; a negative answer without an SOA, or whose negative
  TTL is 0, is not kept (RFC 2308 §5: SHOULD NOT be cached);
- temporary failures (SERVFAIL, REFUSED, timeouts) are never kept: the callers sharing the
  failed query see the error, the next lookup asks again;
- at most `max_entries` answers are kept, the least recently used dropped first; an expired
  answer is dropped when met;
- identical lookups in flight at the same time make one query: on an event loop the first
  caller starts a task the others await (shielded, so one caller's timeout cancels nothing
  for the others); on worker threads (pyspf's blocking twins) the first thread asks and the
  others wait for its outcome, at most the source's timeout (a loop and a thread asking
  the same name at the same moment may make one query each);
- async and blocking lookups share the entries; the lock is held for dictionary work
  only, never across a query, so a thread never blocks the loop for longer than that;
- every call returns a new list: callers may change what they get;
- the AD bit travels inside the kept `Answer` (`is_secure`): every query asks for it, so
  the one answer kept per (name, type) says itself whether it was validated.

Time is a monotonic clock in seconds (`time.monotonic` unless a test passes its own).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from postroom.dns.resolver import (
    Answer,
    AnswerSource,
    RecordType,
    Resolver,
    TypedLookups,
    normalize_name,
)

MIN_TTL = 5  # seconds; a TTL of 0 would otherwise mean a query per message
MAX_TTL = 3600  # an hour: a record changed upstream is seen within the hour at worst
MAX_NEGATIVE_TTL = 900  # RFC 2308 §5 suggests 1-3 h at most; 15 min to see new records soon

Key = tuple[str, RecordType]


@dataclass(slots=True)
class CacheStats:
    """Counters for tests and diagnostics (updated under the lock)."""

    hits: int = 0
    misses: int = 0
    queries: int = 0  # lookups sent to the source
    coalesced: int = 0  # lookups that waited for another caller's query
    evictions: int = 0


@dataclass(slots=True)
class _ThreadFlight:
    """One blocking query other threads may wait for."""

    done: threading.Event
    answer: Answer | None = None
    error: BaseException | None = None


class CachingResolver(TypedLookups):
    """A `Resolver` answering from memory while an answer's TTL lasts."""

    def __init__(self, source: AnswerSource, max_entries: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1 (use with_cache for 0 = off)")
        self.source = source
        self.max_entries = max_entries
        self.stats = CacheStats()
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[Key, tuple[float, Answer]] = OrderedDict()
        self._tasks: dict[tuple[asyncio.AbstractEventLoop, Key], asyncio.Task[Answer]] = {}
        self._thread_flights: dict[Key, _ThreadFlight] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    # -- the table -----------------------------------------------------------------------

    def _fresh(self, key: Key, *, counts_miss: bool = True) -> Answer | None:
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0] > now:
                self._entries.move_to_end(key)
                self.stats.hits += 1
                return entry[1]
            if entry is not None:
                del self._entries[key]
            if counts_miss:
                self.stats.misses += 1
            return None

    def cached(self, name: str, rdtype: RecordType) -> Answer | None:
        """The answer kept for (name, type), or None: lets a caller skip a task (the DNS
        lists) or a thread hop (SPF) for each hit. A hit counts; a miss does not (the
        caller asks next, and that lookup counts it)."""
        return self._fresh(_key(name, rdtype), counts_miss=False)

    def _keep(self, key: Key, answer: Answer) -> None:
        lifetime = _lifetime(answer)
        if lifetime <= 0:
            return
        expires = self._clock() + lifetime
        with self._lock:
            self._entries[key] = (expires, answer)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
                self.stats.evictions += 1

    # -- async lookups (the event loop) -------------------------------------------------

    async def lookup(self, name: str, rdtype: RecordType) -> Answer:
        key = _key(name, rdtype)
        answer = self._fresh(key)
        if answer is not None:
            return answer
        loop = asyncio.get_running_loop()
        task = self._tasks.get((loop, key))
        if task is None:
            task = loop.create_task(self._query(key, name, rdtype))
            self._tasks[(loop, key)] = task
            task.add_done_callback(lambda done: self._task_done(loop, key, done))
        else:
            with self._lock:
                self.stats.coalesced += 1
        # Shielded: a caller that gives up (a DNSBL deadline) leaves the query running for
        # the others, and its answer is still kept.
        return await asyncio.shield(task)

    async def _query(self, key: Key, name: str, rdtype: RecordType) -> Answer:
        with self._lock:
            self.stats.queries += 1
        answer = await self.source.lookup(name, rdtype)
        self._keep(key, answer)
        return answer

    def _task_done(self, loop: asyncio.AbstractEventLoop, key: Key,
                   task: asyncio.Task[Answer]) -> None:
        self._tasks.pop((loop, key), None)
        if not task.cancelled():
            task.exception()  # retrieved here too, in case every waiter gave up

    # -- blocking lookups (worker threads only) -----------------------------------------

    def sync_lookup(self, name: str, rdtype: RecordType) -> Answer:
        key = _key(name, rdtype)
        answer = self._fresh(key)
        if answer is not None:
            return answer
        with self._lock:
            flight = self._thread_flights.get(key)
            is_leader = flight is None
            if flight is None:
                flight = self._thread_flights[key] = _ThreadFlight(threading.Event())
            else:
                self.stats.coalesced += 1
        if is_leader:
            return self._sync_query(key, name, rdtype, flight)
        # The leader's query ends within the source's timeout; past it, ask ourselves.
        if flight.done.wait(self.source.timeout + 1.0):
            if flight.error is not None:
                raise flight.error
            assert flight.answer is not None
            return flight.answer
        return self._sync_query(key, name, rdtype, None)

    def _sync_query(self, key: Key, name: str, rdtype: RecordType,
                    flight: _ThreadFlight | None) -> Answer:
        with self._lock:
            self.stats.queries += 1
        try:
            answer = self.source.sync_lookup(name, rdtype)
            self._keep(key, answer)
            if flight is not None:
                flight.answer = answer
            return answer
        except BaseException as exc:
            if flight is not None:
                flight.error = exc
            raise
        finally:
            if flight is not None:
                with self._lock:
                    if self._thread_flights.get(key) is flight:
                        del self._thread_flights[key]
                flight.done.set()


class _ResolverSource(Resolver, AnswerSource, Protocol):
    """Type of what `with_cache` accepts: the live resolver is both."""


def with_cache(source: _ResolverSource, max_entries: int) -> Resolver:
    """`source` behind a `CachingResolver` of `max_entries` answers; 0 turns caching off
    and gives `source` itself (DNS_CACHE_SIZE=0)."""
    if max_entries <= 0:
        return source
    return CachingResolver(source, max_entries)


def _key(name: str, rdtype: RecordType) -> Key:
    # PTR is keyed by the address as given: LiveResolver builds the reverse name from it.
    return (normalize_name(name), rdtype)


def _lifetime(answer: Answer) -> float:
    if answer.is_nxdomain or not answer.records:
        if answer.ttl <= 0:  # no SOA in the reply: RFC 2308 §5, not cached
            return 0.0
        return float(min(max(answer.ttl, MIN_TTL), MAX_NEGATIVE_TTL))
    return float(min(max(answer.ttl, MIN_TTL), MAX_TTL))
