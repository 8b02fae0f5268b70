"""MX routing with the in-memory FakeResolver (socket-level fallback is in test_worker)."""

from __future__ import annotations

import random

import pytest

from postroom.config import RelayHost
from postroom.dns.fake import FakeResolver
from postroom.outbound.client import SessionError, SmtpReply
from postroom.outbound.model import Outcome
from postroom.outbound.routing import (
    Route,
    RouteError,
    connect_first,
    host_addresses,
    resolve_route,
)

ZONE = {
    "remote.test": {"MX": [(20, "mx2.remote.test"), (10, "mx1.remote.test")]},
    "mx1.remote.test": {"A": ["192.0.2.1"], "AAAA": ["2001:db8::1"]},
    "mx2.remote.test": {"A": ["192.0.2.2"]},
    "implicit.test": {"A": ["192.0.2.9"]},
    "nomail.test": {"MX": [(0, ".")]},
    "bare.test": {"TXT": ["v=spf1 -all"]},
    "ghosts.test": {"MX": [(10, "gone.ghosts.test")]},
}


@pytest.fixture
def resolver() -> FakeResolver:
    return FakeResolver(ZONE)


async def test_mx_preference_order(resolver: FakeResolver) -> None:
    route = await resolve_route("remote.test", resolver, port=25)
    assert route.hosts == ("mx1.remote.test", "mx2.remote.test")
    assert not route.is_implicit and not route.is_relay


async def test_equal_preferences_are_shuffled(resolver: FakeResolver) -> None:
    for host in ("a", "b", "c", "d"):
        resolver.add("many.test", "MX", (10, f"{host}.many.test"))
    orders = {(await resolve_route("many.test", resolver, port=25,
                                   rng=random.Random(seed))).hosts for seed in range(20)}
    assert len(orders) > 1
    assert all(sorted(order) == [f"{h}.many.test" for h in "abcd"] for order in orders)


async def test_implicit_mx(resolver: FakeResolver) -> None:
    route = await resolve_route("implicit.test", resolver, port=2525)
    assert (route.hosts, route.port, route.is_implicit) == (("implicit.test",), 2525, True)


async def test_null_mx_fails_permanently(resolver: FakeResolver) -> None:
    with pytest.raises(RouteError) as caught:
        await resolve_route("nomail.test", resolver, port=25)
    assert caught.value.attempt.outcome is Outcome.FAILED
    assert caught.value.attempt.status == "5.1.10"


async def test_nxdomain_fails_and_servfail_defers(resolver: FakeResolver) -> None:
    with pytest.raises(RouteError) as missing:
        await resolve_route("nowhere.test", resolver, port=25)
    assert missing.value.attempt.outcome is Outcome.FAILED
    resolver.fail("remote.test")
    with pytest.raises(RouteError) as broken:
        await resolve_route("remote.test", resolver, port=25)
    assert broken.value.attempt.outcome is Outcome.DEFERRED


async def test_relay_bypasses_mx(resolver: FakeResolver) -> None:
    route = await resolve_route("remote.test", resolver, port=25,
                                relay=RelayHost("smart.test", 587, "u", "p"))
    assert (route.hosts, route.port, route.is_relay) == (("smart.test",), 587, True)
    assert resolver.queries == []


async def test_addresses_ipv4_first_and_literals(resolver: FakeResolver) -> None:
    assert await host_addresses("mx1.remote.test", resolver) == ["192.0.2.1", "2001:db8::1"]
    assert await host_addresses("[192.0.2.7]", resolver) == ["192.0.2.7"]
    assert await host_addresses("[IPv6:2001:db8::7]", resolver) == ["2001:db8::7"]
    route = await resolve_route("[192.0.2.7]", resolver, port=25)
    assert route.hosts == ("[192.0.2.7]",)


async def test_fallback_to_second_mx_when_first_refuses(resolver: FakeResolver) -> None:
    route = await resolve_route("remote.test", resolver, port=25)
    tried: list[str] = []

    async def connect(ip: str, host: str) -> str:
        tried.append(ip)
        if host == "mx1.remote.test":
            raise ConnectionRefusedError(111, "Connection refused")
        return f"session to {host}"

    assert await connect_first(route, resolver, connect) == "session to mx2.remote.test"
    assert tried == ["192.0.2.1", "2001:db8::1", "192.0.2.2"]


async def test_nothing_reachable_defers(resolver: FakeResolver) -> None:
    route = await resolve_route("remote.test", resolver, port=25)

    async def connect(ip: str, host: str) -> str:
        raise SessionError("cannot connect: timed out")

    with pytest.raises(RouteError) as caught:
        await connect_first(route, resolver, connect)
    assert caught.value.attempt.outcome is Outcome.DEFERRED
    assert "timed out" in caught.value.attempt.diagnostic


async def test_every_server_refusing_with_5xx_fails(resolver: FakeResolver) -> None:
    route = await resolve_route("remote.test", resolver, port=25)

    async def connect(ip: str, host: str) -> str:
        raise SessionError("greeting refused", SmtpReply(554, "5.7.1 go away"),
                           is_service_refusal=True)

    with pytest.raises(RouteError) as caught:
        await connect_first(route, resolver, connect)
    assert caught.value.attempt.outcome is Outcome.FAILED


async def test_auth_failure_is_never_permanent(resolver: FakeResolver) -> None:
    route = await resolve_route("remote.test", resolver, port=25)

    async def connect(ip: str, host: str) -> str:
        raise SessionError("AUTH failed", SmtpReply(535, "5.7.8 bad credentials"))

    with pytest.raises(RouteError) as caught:
        await connect_first(route, resolver, connect)
    assert caught.value.attempt.outcome is Outcome.DEFERRED


async def test_address_limit(resolver: FakeResolver) -> None:
    route = await resolve_route("remote.test", resolver, port=25)
    tried: list[str] = []

    async def connect(ip: str, host: str) -> str:
        tried.append(ip)
        raise OSError("unreachable")

    with pytest.raises(RouteError):
        await connect_first(route, resolver, connect, max_addresses=2)
    assert tried == ["192.0.2.1", "2001:db8::1"]


async def test_unresolvable_hosts(resolver: FakeResolver) -> None:
    async def connect(ip: str, host: str) -> str:
        raise AssertionError("nothing to connect to")

    mx_route = await resolve_route("ghosts.test", resolver, port=25)
    with pytest.raises(RouteError) as ghost:
        await connect_first(mx_route, resolver, connect)
    assert ghost.value.attempt.outcome is Outcome.DEFERRED  # MX host missing: may be fixed
    bare = await resolve_route("bare.test", resolver, port=25)
    assert bare == Route("bare.test", ("bare.test",), 25, is_implicit=True)
    with pytest.raises(RouteError) as no_address:
        await connect_first(bare, resolver, connect)
    assert no_address.value.attempt.outcome is Outcome.FAILED  # RFC 5321 §5.1
