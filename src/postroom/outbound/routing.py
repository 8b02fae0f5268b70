"""Where mail for a domain goes: MX lookup, implicit MX, null MX, the relay host, and
trying each candidate address in turn until one server answers.

Owns RFC 5321 §5.1 as postroom applies it:
- MX records are tried in preference order, equal preferences in random order;
- with no MX record (NODATA) the domain itself is the only host ("implicit MX");
- a null MX (RFC 7505, exchange ".") means the domain takes no mail: a permanent failure
  at once (556 5.1.10, RFC 7505 §4.2), as is a domain that does not exist (NXDOMAIN);
- each host's IPv4 then IPv6 addresses are tried; a host that cannot be resolved or
  reached is skipped, up to `MAX_ADDRESSES` addresses per attempt (Postfix's
  `smtp_mx_address_limit` idea), so a long MX list cannot stall the worker;
- RELAY_HOST bypasses MX: everything goes to that host and port (Postfix `[host]:port`).

Invariants: a `RouteError` always carries an Attempt whose outcome is DEFERRED or FAILED;
temporary DNS trouble is never turned into a bounce.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from postroom.config import RelayHost
from postroom.dns.resolver import DnsTemporaryError, NxDomain, Resolver
from postroom.outbound.client import SessionError
from postroom.outbound.model import Attempt, deferred, failed

MAX_ADDRESSES = 10

T = TypeVar("T")


class RouteError(Exception):
    def __init__(self, attempt: Attempt) -> None:
        super().__init__(attempt.diagnostic)
        self.attempt = attempt


@dataclass(frozen=True, slots=True)
class Route:
    destination: str  # the recipient domain, or "[relay]"
    hosts: tuple[str, ...]  # host names or IP literals, in the order to try
    port: int
    is_relay: bool = False
    is_implicit: bool = False  # no MX: the domain's own A/AAAA (RFC 5321 §5.1)


async def resolve_route(domain: str, resolver: Resolver, *, port: int,
                        relay: RelayHost | None = None,
                        rng: random.Random | None = None) -> Route:
    """The hosts to try for `domain`. Raises RouteError for null MX, NXDOMAIN or a
    temporary DNS failure."""
    if relay is not None:
        return Route("[relay]", (relay.host,), relay.port, is_relay=True)
    if _is_address_literal(domain):  # RFC 5321 §4.1.3: user@[192.0.2.1]
        return Route(domain, (domain,), port, is_implicit=True)
    try:
        records = await resolver.mx(domain)
    except NxDomain as exc:
        raise RouteError(failed("5.1.2", f"domain {domain} does not exist")) from exc
    except DnsTemporaryError as exc:
        raise RouteError(deferred("4.4.3", f"MX lookup for {domain} failed: {exc}")) from exc
    if any(record.is_null for record in records):
        # RFC 7505 §3: a null MX is the only record; if others were published anyway, the
        # domain still declared it takes no mail.
        raise RouteError(failed("5.1.10", f"domain {domain} accepts no mail (null MX)"))
    if not records:
        return Route(domain, (domain,), port, is_implicit=True)
    shuffle = rng or random.Random()
    ordered = sorted(records, key=lambda record: (record.preference, shuffle.random()))
    hosts = tuple(dict.fromkeys(record.host for record in ordered))
    return Route(domain, hosts, port)


async def host_addresses(host: str, resolver: Resolver) -> list[str]:
    """IPv4 then IPv6 addresses of `host`; an IP literal is its own address.

    Raises NxDomain when the host does not exist, DnsTemporaryError when neither lookup
    answered; a host with records of only one family simply returns those.
    """
    literal = _literal_address(host)
    if literal is not None:
        return [literal]
    addresses: list[str] = []
    temporary: DnsTemporaryError | None = None
    for lookup in (resolver.a, resolver.aaaa):
        try:
            addresses += await lookup(host)
        except DnsTemporaryError as exc:
            temporary = exc
    if not addresses and temporary is not None:
        raise temporary
    return addresses


async def connect_first(route: Route, resolver: Resolver,
                        connect: Callable[[str, str], Awaitable[T]],
                        *, max_addresses: int = MAX_ADDRESSES) -> T:
    """Call `connect(ip, host)` for each candidate address until one succeeds.

    `connect` raises SessionError (or OSError) when that server cannot serve; the next
    address is then tried. When none works, raises RouteError: FAILED if every server
    answered with a 5xx refusal or an implicit-MX domain has no address at all, else
    DEFERRED naming the last problem.
    """
    problems: list[str] = []
    refusals: list[bool] = []  # per server reached: was its refusal permanent?
    tried = 0
    for host in route.hosts:
        try:
            addresses = await host_addresses(host, resolver)
        except (NxDomain, DnsTemporaryError) as exc:
            problems.append(f"{host}: address lookup failed ({type(exc).__name__})")
            continue
        if not addresses:
            problems.append(f"{host}: no A or AAAA record")
        for ip in addresses[: max(0, max_addresses - tried)]:
            tried += 1
            try:
                return await connect(ip, host)
            except (SessionError, OSError) as exc:
                problems.append(f"{host}[{ip}]: {exc}")
                refusals.append(_is_permanent_refusal(exc))
    raise RouteError(_no_server_attempt(route, problems, refusals, tried))


def _no_server_attempt(route: Route, problems: list[str], refusals: list[bool],
                       tried: int) -> Attempt:
    summary = "; ".join(problems[-3:]) or "no hosts"
    if tried == 0 and route.is_implicit and all("no A or AAAA" in p for p in problems):
        # RFC 5321 §5.1: no MX and no address records means the domain takes no mail.
        return failed("5.1.2", f"{route.destination} has no MX and no address record")
    if refusals and all(refusals):
        return failed("5.0.0", f"every server refused service: {summary}",
                      remote_mta=route.hosts[-1])
    return deferred("4.4.1", f"no server for {route.destination} could be reached: {summary}")


def _is_permanent_refusal(error: Exception) -> bool:
    """A 5xx greeting or HELO refusal; AUTH or TLS trouble stays temporary."""
    if not isinstance(error, SessionError) or not error.is_service_refusal:
        return False
    return error.reply is not None and 500 <= error.reply.code < 600


def _is_address_literal(domain: str) -> bool:
    return domain.startswith("[") and domain.endswith("]")


def _literal_address(host: str) -> str | None:
    """"[192.0.2.1]", "[IPv6:2001:db8::1]" or a bare IP → the address; else None."""
    text = host[1:-1] if _is_address_literal(host) else host
    if text.lower().startswith("ipv6:"):
        text = text[5:]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None
