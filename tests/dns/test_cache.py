"""Issue 22: the shared DNS cache (dns/cache.py) over LiveResolver and the real test DNS
server, queries counted at the server: TTLs with a controllable clock, RFC 2308 negative
caching, the size bound, coalescing of concurrent lookups, errors never kept, the blocking
path pyspf uses; and the TTLs LiveResolver reports (dns/live.py `lookup`)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from postroom.dns.cache import (
    MAX_NEGATIVE_TTL,
    MAX_TTL,
    MIN_TTL,
    CachingResolver,
    with_cache,
)
from postroom.dns.live import LiveResolver
from postroom.dns.resolver import (
    Answer,
    DnsTemporaryError,
    MxRecord,
    NxDomain,
    RecordType,
)
from postroom.mailauth.spf import SpfVerdict, check_spf
from tests.support.dnsserver import DnsTestServer

# SOA MINIMUM 30 and SOA TTL 300: the negative TTL is 30 s (RFC 2308 §5).
ZONE = """
$TTL 60
@          300 IN SOA ns hostmaster 1 60 60 60 30
@              IN A     192.0.2.1
@              IN MX    10 mx
@              IN TXT   "v=spf1 ip4:192.0.2.0/24 -all"
mx             IN A     192.0.2.10
long     86400 IN A     192.0.2.11
zero         0 IN A     192.0.2.12
alias       20 IN CNAME mx
"""
NO_SOA_ZONE = "$TTL 60\nsoaless.example. A 192.0.2.20\n"


class ManualMonotonic:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="module")
def server() -> Iterator[DnsTestServer]:
    with DnsTestServer(ZONE, origin="cache.test.") as dns_server:
        dns_server.load_zone(NO_SOA_ZONE, ".")
        yield dns_server


@pytest.fixture(autouse=True)
def fresh_counts(server: DnsTestServer) -> None:
    """Queries are counted per test (names repeat across tests)."""
    server.queries.clear()


@pytest.fixture
def clock() -> ManualMonotonic:
    return ManualMonotonic()


@pytest.fixture
def live(server: DnsTestServer) -> LiveResolver:
    return LiveResolver([server.nameserver], timeout=2.0, cache_size=0)


@pytest.fixture
def cache(live: LiveResolver, clock: ManualMonotonic) -> CachingResolver:
    return CachingResolver(live, max_entries=100, clock=clock)


def asked(server: DnsTestServer, name: str, rdtype: str = "A") -> int:
    return server.queries.count((name.rstrip(".") + ".", rdtype))


# -- TTLs ----------------------------------------------------------------------------------


async def test_answer_is_kept_for_its_ttl(server: DnsTestServer, cache: CachingResolver,
                                          clock: ManualMonotonic) -> None:
    assert await cache.a("mx.cache.test") == ["192.0.2.10"]
    assert await cache.a("MX.cache.test.") == ["192.0.2.10"]  # same key: case, dot
    assert asked(server, "mx.cache.test") == 1
    clock.advance(59)
    assert await cache.a("mx.cache.test") == ["192.0.2.10"]
    assert asked(server, "mx.cache.test") == 1
    clock.advance(2)  # 61 s: past the TTL of 60
    assert await cache.a("mx.cache.test") == ["192.0.2.10"]
    assert asked(server, "mx.cache.test") == 2


async def test_ttl_is_capped_and_floored(server: DnsTestServer, cache: CachingResolver,
                                         clock: ManualMonotonic) -> None:
    await cache.a("long.cache.test")
    await cache.a("zero.cache.test")
    clock.advance(MIN_TTL - 1)
    await cache.a("zero.cache.test")
    assert asked(server, "zero.cache.test") == 1  # TTL 0 is raised to MIN_TTL
    clock.advance(2)
    await cache.a("zero.cache.test")
    assert asked(server, "zero.cache.test") == 2
    clock.advance(MAX_TTL - MIN_TTL)  # past the cap, far short of the TTL of 86400
    await cache.a("long.cache.test")
    assert asked(server, "long.cache.test") == 2


async def test_cname_chain_ttl_is_the_smallest(server: DnsTestServer, cache: CachingResolver,
                                               clock: ManualMonotonic) -> None:
    assert await cache.a("alias.cache.test") == ["192.0.2.10"]
    clock.advance(21)  # the CNAME's 20 s, not the address's 60 s
    await cache.a("alias.cache.test")
    assert asked(server, "alias.cache.test") == 2


async def test_changed_record_seen_after_expiry(server: DnsTestServer,
                                                cache: CachingResolver,
                                                clock: ManualMonotonic) -> None:
    server.replace("moving.cache.test", "TXT", "first", ttl=30)
    assert await cache.txt("moving.cache.test") == ["first"]
    server.replace("moving.cache.test", "TXT", "second", ttl=30)
    assert await cache.txt("moving.cache.test") == ["first"]
    clock.advance(31)
    assert await cache.txt("moving.cache.test") == ["second"]


# -- negative caching (RFC 2308) -----------------------------------------------------------


async def test_nxdomain_is_kept_for_the_negative_ttl(server: DnsTestServer,
                                                     cache: CachingResolver,
                                                     clock: ManualMonotonic) -> None:
    for _ in range(3):
        with pytest.raises(NxDomain):
            await cache.a("missing.cache.test")
    assert asked(server, "missing.cache.test") == 1
    clock.advance(31)  # SOA MINIMUM 30
    with pytest.raises(NxDomain):
        await cache.a("missing.cache.test")
    assert asked(server, "missing.cache.test") == 2


async def test_nodata_is_kept_and_differs_from_nxdomain(server: DnsTestServer,
                                                        cache: CachingResolver,
                                                        clock: ManualMonotonic) -> None:
    assert await cache.aaaa("mx.cache.test") == []
    assert await cache.aaaa("mx.cache.test") == []
    assert asked(server, "mx.cache.test", "AAAA") == 1
    clock.advance(31)
    assert await cache.aaaa("mx.cache.test") == []
    assert asked(server, "mx.cache.test", "AAAA") == 2


async def test_negative_ttl_is_capped(server: DnsTestServer, clock: ManualMonotonic) -> None:
    with DnsTestServer("@ 86400 IN SOA ns hm 1 60 60 60 86400\n@ A 192.0.2.1\n",
                       origin="slow.test.") as slow:
        cache = CachingResolver(LiveResolver([slow.nameserver], cache_size=0), clock=clock)
        with pytest.raises(NxDomain):
            await cache.a("gone.slow.test")
        clock.advance(MAX_NEGATIVE_TTL - 1)
        with pytest.raises(NxDomain):
            await cache.a("gone.slow.test")
        assert asked(slow, "gone.slow.test") == 1
        clock.advance(2)
        with pytest.raises(NxDomain):
            await cache.a("gone.slow.test")
        assert asked(slow, "gone.slow.test") == 2


async def test_negative_answer_without_soa_is_not_kept(server: DnsTestServer,
                                                       cache: CachingResolver) -> None:
    for _ in range(2):
        with pytest.raises(NxDomain):
            await cache.a("nothing.soaless.example")
        assert await cache.txt("soaless.example") == []
    assert asked(server, "nothing.soaless.example") == 2
    assert asked(server, "soaless.example", "TXT") == 2


# -- errors --------------------------------------------------------------------------------


async def test_temporary_errors_are_not_kept(server: DnsTestServer,
                                             cache: CachingResolver) -> None:
    server.add("flaky.cache.test", "A", "192.0.2.30")
    server.fail("flaky.cache.test")
    with pytest.raises(DnsTemporaryError):
        await cache.a("flaky.cache.test")
    with pytest.raises(DnsTemporaryError):
        cache.sync_a("flaky.cache.test")
    server.heal("flaky.cache.test")
    assert await cache.a("flaky.cache.test") == ["192.0.2.30"]
    assert asked(server, "flaky.cache.test") == 3


async def test_invalid_ptr_address_is_an_error_each_time(cache: CachingResolver) -> None:
    with pytest.raises(ValueError):
        await cache.ptr("not-an-ip")
    assert len(cache) == 0


# -- the bound -----------------------------------------------------------------------------


async def test_least_recently_used_answer_is_dropped(server: DnsTestServer,
                                                     live: LiveResolver,
                                                     clock: ManualMonotonic) -> None:
    cache = CachingResolver(live, max_entries=2, clock=clock)
    await cache.a("cache.test")
    await cache.a("mx.cache.test")
    await cache.a("cache.test")  # now the most recently used
    await cache.txt("cache.test")  # third entry: mx.cache.test A goes
    assert len(cache) == 2 and cache.stats.evictions == 1
    before = (asked(server, "cache.test"), asked(server, "mx.cache.test"))
    await cache.a("cache.test")
    await cache.a("mx.cache.test")
    assert (asked(server, "cache.test"), asked(server, "mx.cache.test")) == (
        before[0], before[1] + 1)


def test_size_zero_turns_the_cache_off(live: LiveResolver) -> None:
    assert with_cache(live, 0) is live
    assert isinstance(with_cache(live, 5), CachingResolver)
    with pytest.raises(ValueError):
        CachingResolver(live, max_entries=0)


# -- coalescing ----------------------------------------------------------------------------


async def test_ten_concurrent_lookups_make_one_query(server: DnsTestServer,
                                                     cache: CachingResolver) -> None:
    # The answer has no SOA, so nothing is kept: only coalescing can save the queries.
    answers = await asyncio.gather(*(cache.txt("soaless.example") for _ in range(10)))
    assert answers == [[]] * 10
    assert asked(server, "soaless.example", "TXT") == 1
    assert cache.stats.coalesced == 9 and len(cache) == 0


async def test_concurrent_callers_share_a_failure(server: DnsTestServer,
                                                  cache: CachingResolver) -> None:
    server.fail("down.cache.test")
    outcomes = await asyncio.gather(*(cache.mx("down.cache.test") for _ in range(5)),
                                    return_exceptions=True)
    assert all(isinstance(o, DnsTemporaryError) for o in outcomes)
    assert asked(server, "down.cache.test", "MX") == 1


async def test_a_caller_giving_up_does_not_cancel_the_query(server: DnsTestServer,
                                                            live: LiveResolver,
                                                            clock: ManualMonotonic) -> None:
    gate = GatedSource(live)
    cache = CachingResolver(gate, clock=clock)
    impatient = asyncio.ensure_future(cache.mx("cache.test"))
    patient = asyncio.ensure_future(cache.mx("cache.test"))
    await asyncio.wait_for(gate.entered.wait(), 5)
    impatient.cancel()
    gate.release.set()
    assert await asyncio.wait_for(patient, 5) == [MxRecord(10, "mx.cache.test")]
    assert impatient.cancelled()
    assert await cache.mx("cache.test") == [MxRecord(10, "mx.cache.test")]
    assert gate.calls == 1


class GatedSource:
    """Wraps LiveResolver; the async lookup waits for `release` (set by the test)."""

    def __init__(self, live: LiveResolver) -> None:
        self.live = live
        self.timeout = live.timeout
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.calls = 0

    async def lookup(self, name: str, rdtype: RecordType) -> Answer:
        self.calls += 1
        self.entered.set()
        await self.release.wait()
        return await self.live.lookup(name, rdtype)

    def sync_lookup(self, name: str, rdtype: RecordType) -> Answer:
        return self.live.sync_lookup(name, rdtype)


# -- the blocking path (pyspf on worker threads) -------------------------------------------


class BlockingGate:
    """Wraps LiveResolver; the blocking lookup waits until the test opens the gate."""

    def __init__(self, live: LiveResolver) -> None:
        self.live = live
        self.timeout = live.timeout
        self.open = threading.Event()
        self.calls = 0

    async def lookup(self, name: str, rdtype: RecordType) -> Answer:
        return await self.live.lookup(name, rdtype)

    def sync_lookup(self, name: str, rdtype: RecordType) -> Answer:
        self.calls += 1
        assert self.open.wait(10)
        return self.live.sync_lookup(name, rdtype)


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    event = threading.Event()
    for _ in range(int(timeout / 0.005)):
        if condition():
            return
        event.wait(0.005)
    raise AssertionError("condition not reached")


def test_blocking_lookups_coalesce_across_threads(server: DnsTestServer, live: LiveResolver,
                                                  clock: ManualMonotonic) -> None:
    gate = BlockingGate(live)
    cache = CachingResolver(gate, clock=clock)
    with ThreadPoolExecutor(10) as pool:
        futures = [pool.submit(cache.sync_txt, "soaless.example") for _ in range(10)]
        wait_until(lambda: cache.stats.coalesced == 9)
        gate.open.set()
        assert [f.result(10) for f in futures] == [[]] * 10
    assert gate.calls == 1


async def test_blocking_and_async_lookups_share_answers(server: DnsTestServer,
                                                        cache: CachingResolver) -> None:
    assert await asyncio.to_thread(cache.sync_mx, "cache.test") == [
        MxRecord(10, "mx.cache.test")]
    assert await cache.mx("cache.test") == [MxRecord(10, "mx.cache.test")]
    with pytest.raises(NxDomain):
        await asyncio.to_thread(cache.sync_txt, "nope.cache.test")
    with pytest.raises(NxDomain):
        await cache.txt("nope.cache.test")
    assert asked(server, "cache.test", "MX") == 1
    assert asked(server, "nope.cache.test", "TXT") == 1


async def test_spf_checks_ask_once(server: DnsTestServer, cache: CachingResolver) -> None:
    results = [await check_spf(cache, "192.0.2.7", f"u{i}@cache.test", "h.cache.test")
               for i in range(5)]
    assert {r.result for r in results} == {SpfVerdict.PASS}
    assert asked(server, "cache.test", "TXT") == 1


def test_returned_lists_are_copies(cache: CachingResolver) -> None:
    first = cache.sync_a("mx.cache.test")
    first.append("203.0.113.9")
    assert cache.sync_a("mx.cache.test") == ["192.0.2.10"]


# -- the TTLs LiveResolver reports ---------------------------------------------------------


async def test_live_lookup_reports_ttls(live: LiveResolver) -> None:
    assert await live.lookup("mx.cache.test", RecordType.A) == Answer(("192.0.2.10",), 60)
    assert (await live.lookup("alias.cache.test", RecordType.A)).ttl == 20
    assert live.sync_lookup("missing.cache.test", RecordType.TXT) == Answer(
        (), 30, is_nxdomain=True)
    assert await live.lookup("mx.cache.test", RecordType.AAAA) == Answer((), 30)
    assert await live.lookup("soaless.example", RecordType.TXT) == Answer((), 0)
    assert (await live.lookup("192.0.2.10", RecordType.PTR)).is_nxdomain
