"""SPF over the real test DNS server: every result, the mechanisms, limits, isolation
between resolvers (pyspf's DNS hook is per call, not per process), and evaluation on the
event loop from the DNS cache."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from postroom.dns.cache import CachingResolver
from postroom.dns.fake import FakeResolver
from postroom.dns.live import LiveResolver
from postroom.dns.resolver import Answer, RecordType
from postroom.mailauth.spf import ON_LOOP_TEXT, SpfVerdict, check_spf, reverse_name_to_ip
from tests.support.dnsserver import DnsTestServer

INCLUDES = " ".join(f"include:l{i}.example.com" for i in range(11))
LEAVES = "\n".join(f'l{i}.example.com. TXT "v=spf1 -all"' for i in range(11))

ZONE = f"""
$TTL 60
example.com.           TXT "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 " (
                           "include:_spf.example.net a:relay.example.com mx -all" )
example.com.           MX  10 mx.example.com.
mx.example.com.        A   198.51.100.7
relay.example.com.     A   203.0.113.9
_spf.example.net.      TXT "v=spf1 ip4:198.18.0.0/15 -all"
soft.example.com.      TXT "v=spf1 ip4:192.0.2.1 ~all"
neutral.example.com.   TXT "v=spf1 ?all"
redirect.example.com.  TXT "v=spf1 redirect=example.com"
macro.example.com.     TXT "v=spf1 exists:%{{i}}.allow.%{{d}} -all"
192.0.2.55.allow.macro.example.com. A 127.0.0.2
nospf.example.com.     A   192.0.2.1
nospf.example.com.     TXT "not spf"
two.example.com.       TXT "v=spf1 -all"
two.example.com.       TXT "v=spf1 +all"
syntax.example.com.    TXT "v=spf1 ip4:300.1.1.1 -all"
typo.example.com.      TXT "v=spf1 ipv5:192.0.2.1 -all"
{LEAVES}
void.example.com.      TXT "v=spf1 a:v1.example.com a:v2.example.com a:v3.example.com -all"
helo.example.org.      TXT "v=spf1 ip4:192.0.2.9 -all"
tempinc.example.com.   TXT "v=spf1 include:broken.example.com -all"
expl.example.com.      TXT "v=spf1 ip4:192.0.2.1 exp=why.expl.example.com -all"
"""


@pytest.fixture(scope="module")
def dns_server() -> Iterator[DnsTestServer]:
    with DnsTestServer(ZONE) as server:
        add_the_rest(server)
        server.fail("slow.example.com", "drop")
        yield server


def add_the_rest(server: DnsTestServer) -> None:
    # Over 255 octets: add() splits it into several character-strings.
    server.add("toomany.example.com", "TXT", f"v=spf1 {INCLUDES} -all")
    server.fail("broken.example.com")
    server.fail("why.expl.example.com")  # an explanation that never arrives


@pytest.fixture
def resolver(dns_server: DnsTestServer) -> LiveResolver:
    return LiveResolver([dns_server.nameserver], timeout=2.0)


CASES = [
    ("192.0.2.200", "a@example.com", SpfVerdict.PASS),        # ip4
    ("2001:db8::25", "a@example.com", SpfVerdict.PASS),       # ip6
    ("198.18.3.4", "a@example.com", SpfVerdict.PASS),         # include
    ("203.0.113.9", "a@example.com", SpfVerdict.PASS),        # a:
    ("198.51.100.7", "a@example.com", SpfVerdict.PASS),       # mx
    ("10.1.1.1", "a@example.com", SpfVerdict.FAIL),           # -all
    ("2001:db9::1", "a@example.com", SpfVerdict.FAIL),
    ("192.0.2.1", "a@soft.example.com", SpfVerdict.PASS),
    ("192.0.2.2", "a@soft.example.com", SpfVerdict.SOFTFAIL),
    ("192.0.2.2", "a@neutral.example.com", SpfVerdict.NEUTRAL),
    ("192.0.2.200", "a@redirect.example.com", SpfVerdict.PASS),  # redirect=
    ("10.1.1.1", "a@redirect.example.com", SpfVerdict.FAIL),
    ("192.0.2.55", "a@macro.example.com", SpfVerdict.PASS),   # %{i} and %{d}
    ("192.0.2.56", "a@macro.example.com", SpfVerdict.FAIL),
    ("192.0.2.1", "a@nospf.example.com", SpfVerdict.NONE),    # TXT but no SPF
    ("192.0.2.1", "a@missing.example.com", SpfVerdict.NONE),  # NXDOMAIN
    ("192.0.2.1", "a@two.example.com", SpfVerdict.PERMERROR),
    ("192.0.2.1", "a@syntax.example.com", SpfVerdict.PERMERROR),
    ("192.0.2.1", "a@typo.example.com", SpfVerdict.PERMERROR),
    ("192.0.2.1", "a@toomany.example.com", SpfVerdict.PERMERROR),  # RFC 7208 §4.6.4: 10
    ("192.0.2.1", "a@void.example.com", SpfVerdict.PERMERROR),     # §4.6.4: 2 void
    ("192.0.2.1", "a@broken.example.com", SpfVerdict.TEMPERROR),   # SERVFAIL
    ("192.0.2.1", "a@tempinc.example.com", SpfVerdict.TEMPERROR),  # SERVFAIL in include
]


@pytest.mark.parametrize(("ip", "sender", "expected"), CASES)
async def test_results(resolver: LiveResolver, ip: str, sender: str,
                       expected: SpfVerdict) -> None:
    result = await check_spf(resolver, ip, sender, "client.example.org")
    assert result.result == expected, result
    assert result.domain == sender.partition("@")[2]
    assert (result.property_name, result.property_value) == ("smtp.mailfrom", sender)


async def test_nine_includes_are_within_the_limit(dns_server: DnsTestServer,
                                                  resolver: LiveResolver) -> None:
    nine = " ".join(f"include:l{i}.example.com" for i in range(9))
    dns_server.replace("nine.example.com", "TXT", f"v=spf1 {nine} ip4:192.0.2.1 -all")
    result = await check_spf(resolver, "192.0.2.1", "a@nine.example.com", "h.example.org")
    assert result.result == SpfVerdict.PASS


async def test_timeout_is_temperror(dns_server: DnsTestServer) -> None:
    resolver = LiveResolver([dns_server.nameserver], timeout=0.3)
    result = await check_spf(resolver, "192.0.2.1", "a@slow.example.com", "h.example.org")
    assert result.result == SpfVerdict.TEMPERROR


async def test_null_sender_checks_helo(resolver: LiveResolver) -> None:
    result = await check_spf(resolver, "192.0.2.9", "", "helo.example.org")
    assert result.result == SpfVerdict.PASS
    assert result.domain == "helo.example.org"
    assert (result.property_name, result.property_value) == ("smtp.helo", "helo.example.org")
    result = await check_spf(resolver, "192.0.2.10", "<>", "helo.example.org")
    assert result.result == SpfVerdict.FAIL


async def test_fail_carries_an_explanation(resolver: LiveResolver) -> None:
    result = await check_spf(resolver, "10.1.1.1", "a@example.com", "h.example.org")
    assert result.explanation


async def test_ip_literal_helo_is_none_without_dns(resolver: LiveResolver,
                                                   dns_server: DnsTestServer) -> None:
    before = len(dns_server.queries)
    result = await check_spf(resolver, "192.0.2.1", "", "[192.0.2.1]")
    assert result.result == SpfVerdict.NONE
    assert len(dns_server.queries) == before


async def test_fake_resolver_works_too() -> None:
    fake = FakeResolver({"example.com": {"TXT": ["v=spf1 mx -all"],
                                         "MX": [(10, "mx.example.com")]},
                         "mx.example.com": {"A": ["192.0.2.7"]}})
    assert (await check_spf(fake, "192.0.2.7", "a@example.com", "h")).result == SpfVerdict.PASS
    assert (await check_spf(fake, "192.0.2.8", "a@example.com", "h")).result == SpfVerdict.FAIL
    assert ("example.com", "MX") in fake.queries


async def test_two_resolvers_concurrently_do_not_leak() -> None:
    """Same domain, different answers per server; checks interleave on worker threads."""
    zone = "$TTL 60\nshared.example. TXT \"v=spf1 {} -all\"\n"
    with DnsTestServer(zone.format("ip4:192.0.2.1")) as one, \
            DnsTestServer(zone.format("ip4:192.0.2.2")) as two:
        first = LiveResolver([one.nameserver], cache_size=1)
        second = LiveResolver([two.nameserver], cache_size=1)
        checks = []
        for _ in range(15):
            checks.append(check_spf(first, "192.0.2.1", "a@shared.example", "h.example"))
            checks.append(check_spf(second, "192.0.2.1", "a@shared.example", "h.example"))
        results = await asyncio.gather(*checks)
        assert [r.result for r in results[0::2]] == [SpfVerdict.PASS] * 15
        assert [r.result for r in results[1::2]] == [SpfVerdict.FAIL] * 15
        assert one.queries and two.queries


@pytest.fixture(scope="module")
def soa_dns_server() -> Iterator[DnsTestServer]:
    """The same data with an SOA for example.com, so its negative answers can be kept
    (RFC 2308 §5) like a real zone's."""
    with DnsTestServer(ZONE) as server:
        server.add("example.com", "SOA", "ns.example.com. hostmaster.example.com. "
                                         "1 3600 600 86400 60", ttl=60)
        add_the_rest(server)
        yield server


class ThreadSpy(CachingResolver):
    """The cache, noting every blocking lookup (pyspf on a worker thread asks them)."""

    def __init__(self, source: LiveResolver) -> None:
        super().__init__(source)
        self.blocking: list[tuple[str, int]] = []

    def sync_lookup(self, name: str, rdtype: RecordType) -> Answer:
        self.blocking.append((name, threading.get_ident()))
        return super().sync_lookup(name, rdtype)


@pytest.mark.parametrize(("ip", "sender", "expected"), CASES)
async def test_a_sender_seen_before_is_evaluated_on_the_loop_from_the_cache(
        soa_dns_server: DnsTestServer, ip: str, sender: str, expected: SpfVerdict) -> None:
    dns_server = soa_dns_server
    cache = ThreadSpy(LiveResolver([dns_server.nameserver], timeout=2.0, cache_size=0))
    first = await check_spf(cache, ip, sender, "client.example.org")
    assert first.result == expected and cache.blocking  # asked, on a worker thread
    cache.blocking.clear()
    asked = len(dns_server.queries)
    again = await check_spf(cache, ip, sender, "client.example.org")
    assert again == first
    if expected is SpfVerdict.TEMPERROR:
        # A failure is never kept: the loop misses it and the thread asks again.
        assert cache.blocking and len(dns_server.queries) > asked
    else:
        assert cache.blocking == [] and len(dns_server.queries) == asked


async def test_long_records_are_evaluated_on_a_thread_even_when_cached(
        soa_dns_server: DnsTestServer) -> None:
    """More record text than ON_LOOP_TEXT: parsing it would hold the loop up."""
    long_record = "v=spf1 " + " ".join(f"ip4:198.51.{n // 250}.{n % 250}" for n in range(600))
    assert len(long_record) > ON_LOOP_TEXT
    soa_dns_server.add("long.example.com", "TXT", long_record + " -all")
    cache = ThreadSpy(LiveResolver([soa_dns_server.nameserver], timeout=2.0, cache_size=0))
    first = await check_spf(cache, "198.51.1.7", "a@long.example.com", "h.example.org")
    cache.blocking.clear()
    again = await check_spf(cache, "198.51.1.7", "a@long.example.com", "h.example.org")
    assert again == first and again.result == SpfVerdict.PASS
    assert [name for name, _ in cache.blocking] == ["long.example.com"]  # on a thread


async def test_a_miss_pyspf_swallows_still_sends_the_evaluation_to_a_thread(
        soa_dns_server: DnsTestServer) -> None:
    """pyspf ignores a failed exp= lookup; the loop's miss must not be ignored with it."""
    cache = ThreadSpy(LiveResolver([soa_dns_server.nameserver], timeout=2.0, cache_size=0))
    first = await check_spf(cache, "10.1.1.1", "a@expl.example.com", "h.example.org")
    cache.blocking.clear()
    again = await check_spf(cache, "10.1.1.1", "a@expl.example.com", "h.example.org")
    assert again == first and again.result == SpfVerdict.FAIL
    assert "why.expl.example.com" in [name for name, _ in cache.blocking]
    assert threading.get_ident() not in {ident for _, ident in cache.blocking}


def test_reverse_names() -> None:
    assert reverse_name_to_ip("4.3.2.1.in-addr.arpa.") == "1.2.3.4"
    nibbles = ".".join(reversed("20010db8000000000000000000000001"))
    assert reverse_name_to_ip(nibbles + ".ip6.arpa") == "2001:0db8:0000:0000:0000:0000:0000:0001"
    assert reverse_name_to_ip("example.com") is None


@pytest.mark.parametrize(("sender", "why"), [
    ("a@toomany.example.com", "Too many DNS lookups"),
    ("a@void.example.com", "Void lookup limit"),
    ("a@two.example.com", "Two or more"),
])
async def test_permerror_reasons(resolver: LiveResolver, sender: str, why: str) -> None:
    result = await check_spf(resolver, "192.0.2.1", sender, "h.example.org")
    assert result.result == SpfVerdict.PERMERROR
    assert why in result.explanation


async def test_invalid_client_ip_is_permerror(resolver: LiveResolver) -> None:
    result = await check_spf(resolver, "not-an-ip", "a@example.com", "h.example.org")
    assert result.result == SpfVerdict.PERMERROR
