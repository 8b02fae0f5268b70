"""The AD bit and TLSA records through the resolver stack: LiveResolver against the test
DNS server, and the shared cache keeping each answer's flag with it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from postroom.dns.cache import CachingResolver
from postroom.dns.fake import FakeResolver
from postroom.dns.live import LiveResolver
from postroom.dns.resolver import DnsTemporaryError, RecordType, TlsaRecord
from tests.support.dnsserver import DnsTestServer

DIGEST = "ab" * 32


@pytest.fixture
def server() -> Iterator[DnsTestServer]:
    with DnsTestServer() as running:
        running.add("signed.test", "MX", "10 mx.signed.test.")
        running.add("_25._tcp.mx.signed.test", "TLSA", f"3 1 1 {DIGEST}")
        running.add("plain.test", "MX", "10 mx.plain.test.")
        running.add("_25._tcp.mx.plain.test", "TLSA", f"3 1 1 {DIGEST}")
        running.secure("signed.test")
        yield running


async def test_answers_carry_the_ad_bit_of_their_zone(server: DnsTestServer) -> None:
    resolver = LiveResolver([server.nameserver], timeout=2, cache_size=0)
    tlsa = await resolver.answer("_25._tcp.mx.signed.test", RecordType.TLSA)
    assert tlsa.is_secure and tlsa.records == (TlsaRecord(3, 1, 1, bytes.fromhex(DIGEST)),)
    assert str(tlsa.records[0]) == f"3 1 1 {DIGEST}"
    assert (await resolver.answer("signed.test", RecordType.MX)).is_secure
    missing = await resolver.answer("_25._tcp.nothing.signed.test", RecordType.TLSA)
    assert missing.is_nxdomain and missing.is_secure
    nodata = await resolver.answer("signed.test", RecordType.TLSA)
    assert nodata.records == () and nodata.is_secure
    plain = await resolver.answer("_25._tcp.mx.plain.test", RecordType.TLSA)
    assert plain.records and not plain.is_secure


async def test_the_cache_never_mixes_secure_and_insecure_answers(
        server: DnsTestServer) -> None:
    cache = CachingResolver(LiveResolver([server.nameserver], timeout=2, cache_size=0))
    for _ in range(2):
        assert (await cache.answer("_25._tcp.mx.signed.test", RecordType.TLSA)).is_secure
        assert not (await cache.answer("_25._tcp.mx.plain.test", RecordType.TLSA)).is_secure
    assert cache.stats.queries == 2 and cache.stats.hits == 2
    # The blocking twin and the typed lookups share the same entries.
    assert await cache.mx("signed.test") and cache.sync_mx("plain.test")


async def test_servfail_is_a_temporary_error(server: DnsTestServer) -> None:
    server.fail("_25._tcp.mx.signed.test")
    resolver = LiveResolver([server.nameserver], timeout=2, cache_size=0)
    with pytest.raises(DnsTemporaryError):
        await resolver.answer("_25._tcp.mx.signed.test", RecordType.TLSA)


async def test_the_fake_resolver_speaks_the_same_contract() -> None:
    fake = FakeResolver({"_25._tcp.mx.a.test": {"TLSA": [f"3 1 1 {DIGEST}"]},
                         "a.test": {"MX": [(10, "mx.a.test")]}})
    fake.secure("a.test")
    answer = await fake.answer("_25._tcp.mx.a.test", RecordType.TLSA)
    assert answer.is_secure and answer.records[0] == TlsaRecord(3, 1, 1, bytes.fromhex(DIGEST))
    assert (await fake.answer("nope.b.test", RecordType.MX)).is_nxdomain
    assert not (await fake.answer("nope.b.test", RecordType.MX)).is_secure
