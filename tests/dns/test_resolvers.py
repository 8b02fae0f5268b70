"""The Resolver contract, run against LiveResolver (over the real test DNS server) and
FakeResolver with the same data, plus live-only behaviour (TCP fallback, cache, timeouts)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from postroom.dns.fake import FakeResolver
from postroom.dns.live import LiveResolver
from postroom.dns.resolver import DnsTemporaryError, MxRecord, NxDomain, Resolver
from tests.support.dnsserver import DnsTestServer

ZONE = """
$TTL 60
@              IN SOA ns hostmaster 1 60 60 60 0
@              IN A     192.0.2.1
@              IN AAAA  2001:db8::1
@              IN MX    20 mx2
@              IN MX    10 MX1
@              IN TXT   "v=spf1 " "ip4:192.0.2.0/24 -all"
@              IN TXT   "other"
mx1            IN A     192.0.2.10
mx2            IN A     192.0.2.20
null           IN MX    0 .
sel._domainkey IN TXT   "v=DKIM1; p=abc"
alias          IN CNAME mx1
"""

FAKE = {
    "example.com": {"A": ["192.0.2.1"], "AAAA": ["2001:db8::1"],
                    "MX": [(20, "mx2.example.com"), (10, "mx1.example.com")],
                    "TXT": ["v=spf1 ip4:192.0.2.0/24 -all", "other"]},
    "mx1.example.com": {"A": ["192.0.2.10"]},
    "mx2.example.com": {"A": ["192.0.2.20"]},
    "alias.example.com": {"A": ["192.0.2.10"]},
    "null.example.com": {"MX": [(0, ".")]},
    "sel._domainkey.example.com": {"TXT": ["v=DKIM1; p=abc"]},
    "192.0.2.10": {"PTR": ["mx1.example.com."]},
}


@pytest.fixture(scope="module")
def dns_server() -> Iterator[DnsTestServer]:
    with DnsTestServer(ZONE, origin="example.com.") as server:
        server.add("10.2.0.192.in-addr.arpa", "PTR", "mx1.example.com.")
        server.fail("broken.example.com")
        yield server


@pytest.fixture(params=["live", "fake"])
async def resolver(request: pytest.FixtureRequest, dns_server: DnsTestServer
                   ) -> AsyncIterator[Resolver]:
    if request.param == "live":
        yield LiveResolver([dns_server.nameserver], timeout=2.0)
    else:
        fake = FakeResolver(FAKE)
        fake.fail("broken.example.com")
        yield fake


async def test_addresses(resolver: Resolver) -> None:
    assert await resolver.a("example.com") == ["192.0.2.1"]
    assert await resolver.aaaa("example.com.") == ["2001:db8::1"]
    assert resolver.sync_a("EXAMPLE.com") == ["192.0.2.1"]
    assert resolver.sync_aaaa("example.com") == ["2001:db8::1"]
    assert await resolver.a("alias.example.com") == ["192.0.2.10"]


async def test_mx_lowercased_and_null_mx(resolver: Resolver) -> None:
    assert sorted(await resolver.mx("example.com")) == [
        MxRecord(10, "mx1.example.com"), MxRecord(20, "mx2.example.com")]
    null = await resolver.mx("null.example.com")
    assert null == [MxRecord(0, "")] and null[0].is_null
    assert resolver.sync_mx("null.example.com") == [MxRecord(0, "")]


async def test_txt_joins_strings_per_record(resolver: Resolver) -> None:
    assert sorted(await resolver.txt("example.com")) == [
        "other", "v=spf1 ip4:192.0.2.0/24 -all"]
    assert resolver.sync_txt("sel._domainkey.example.com") == ["v=DKIM1; p=abc"]


async def test_ptr(resolver: Resolver) -> None:
    assert await resolver.ptr("192.0.2.10") == ["mx1.example.com"]
    assert resolver.sync_ptr("192.0.2.10") == ["mx1.example.com"]


async def test_nxdomain_versus_nodata(resolver: Resolver) -> None:
    with pytest.raises(NxDomain):
        await resolver.a("missing.example.com")
    with pytest.raises(NxDomain):
        resolver.sync_txt("missing.example.com")
    assert await resolver.aaaa("mx1.example.com") == []
    # An empty non-terminal exists: NOERROR with no data (RFC 8020).
    assert await resolver.txt("_domainkey.example.com") == []


async def test_servfail_is_temporary(resolver: Resolver) -> None:
    with pytest.raises(DnsTemporaryError):
        await resolver.a("broken.example.com")
    with pytest.raises(DnsTemporaryError):
        resolver.sync_txt("broken.example.com")


async def test_dropped_query_times_out_as_temporary(dns_server: DnsTestServer) -> None:
    dns_server.fail("silent.example.com", "drop")
    resolver = LiveResolver([dns_server.nameserver], timeout=0.3)
    with pytest.raises(DnsTemporaryError):
        await resolver.txt("silent.example.com")


async def test_large_txt_falls_back_to_tcp(dns_server: DnsTestServer) -> None:
    dns_server.replace("big.example.com", "TXT", "x" * 3000)
    resolver = LiveResolver([dns_server.nameserver])
    assert await resolver.txt("big.example.com") == ["x" * 3000]


async def test_records_change_while_running(dns_server: DnsTestServer) -> None:
    resolver = LiveResolver([dns_server.nameserver])
    dns_server.replace("changing.example.com", "A", "192.0.2.50")
    assert await resolver.a("changing.example.com") == ["192.0.2.50"]
    dns_server.replace("changing.example.com", "A", "192.0.2.51")
    assert await resolver.a("changing.example.com") == ["192.0.2.50"]  # cached (TTL 60)
    resolver.clear_cache()
    assert await resolver.a("changing.example.com") == ["192.0.2.51"]
    dns_server.remove("changing.example.com")
    resolver.clear_cache()
    with pytest.raises(NxDomain):
        await resolver.a("changing.example.com")


async def test_no_search_list(dns_server: DnsTestServer) -> None:
    """A relative-looking name is asked as absolute, exactly once."""
    resolver = LiveResolver([dns_server.nameserver])
    before = len(dns_server.queries)
    with pytest.raises(NxDomain):
        await resolver.a("nosuchhost")
    assert dns_server.queries[before:] == [("nosuchhost.", "A")]


async def test_concurrent_async_lookups(dns_server: DnsTestServer) -> None:
    resolver = LiveResolver([dns_server.nameserver])
    answers = await asyncio.gather(*(resolver.a("example.com") for _ in range(20)))
    assert answers == [["192.0.2.1"]] * 20


async def test_invalid_name_is_nxdomain(resolver: Resolver) -> None:
    with pytest.raises(NxDomain):
        await resolver.a("a" * 64 + ".example.com")
