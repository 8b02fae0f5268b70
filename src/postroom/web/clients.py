"""Who the client of a web request is: the TCP peer, or — when the peer is one of
WEB_TRUSTED_PROXIES — the address the proxy appended to X-Forwarded-For.

Owns `client_address(request)` and `client_key(request)` (the key bans, limits and the
audit log use, security/peer.py). Only the rightmost X-Forwarded-For entries are
believed, walking left while they are trusted proxies themselves: anything further left
was written by the client and proves nothing.
"""

from __future__ import annotations

import ipaddress

from starlette.requests import Request

from postroom.security.limits import Network
from postroom.security.peer import address_key

MAX_FORWARDED_HOPS = 20


def forwarded_client(peer: str, forwarded_for: list[str],
                     trusted: list[Network]) -> str:
    """The client address, given the TCP peer and the X-Forwarded-For headers."""
    if not is_trusted_proxy(peer, trusted):
        return peer
    hops = [hop.strip() for header in forwarded_for for hop in header.split(",")]
    client = peer
    for hop in reversed(hops[-MAX_FORWARDED_HOPS:]):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return client  # unparseable: stop at the last address we could believe
        client = hop
        if not is_trusted_proxy(hop, trusted):
            return hop
    return client


def client_address(request: Request) -> str:
    peer = request.client.host if request.client is not None else ""
    trusted = request.app.state.ctx.config.web_proxy_networks
    return forwarded_client(peer, request.headers.getlist("x-forwarded-for"), trusted)


def client_key(request: Request) -> str | None:
    """The address key of this request's client; None for a non-IP peer."""
    try:
        return address_key(client_address(request))
    except ValueError:
        return None


def is_trusted_proxy(address: str, trusted: list[Network]) -> bool:
    """Is `address` (a TCP peer or a forwarded hop) one of WEB_TRUSTED_PROXIES?"""
    try:
        parsed = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        parsed = parsed.ipv4_mapped
    return any(parsed in network for network in trusted)
