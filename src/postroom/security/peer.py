"""Who is on the other end of the connection the current task serves.

Owns the `CLIENT_ADDRESS` context variable and the address key bans and limits use.
app.py sets the variable (and `LISTENER`, the listener's name) once per connection task,
before the protocol handler runs;
anything below (AccountService.authenticate, off-loop threads started with
`asyncio.to_thread`, which copies the context) reads it, so IMAP, POP3 and SMTP get
brute-force protection without passing the address through their own code.
Behind a load balancer speaking the PROXY protocol, app.py also sets `PROXIED_PEER` to
the client the header names; `client_peername` is the one place sessions ask who the
client is (Received header, SPF, TRUSTED_NETWORKS, logs), so they see that client and
not the balancer.

Invariant: `address_key` maps every spelling of one client to one key — IPv4-mapped IPv6
(`::ffff:192.0.2.1`, seen on dual-stack listeners) becomes the IPv4 address, and IPv6
addresses become their /64, the smallest block an ISP hands one customer, so an attacker
cannot rotate through the 2^64 addresses of its own subnet.
"""

from __future__ import annotations

import contextvars
import ipaddress
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

CLIENT_ADDRESS: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "postroom_client_address", default=None)
# (address, port) of the client a PROXY header named for this connection task.
PROXIED_PEER: contextvars.ContextVar[tuple[str, int] | None] = contextvars.ContextVar(
    "postroom_proxied_peer", default=None)
# The listener (ListenerSpec.name: "imaps", "submission", …, or "web") the task serves:
# the login history (accounts/logins.py) says which protocol a login came by.
LISTENER: contextvars.ContextVar[str] = contextvars.ContextVar(
    "postroom_listener", default="other")

IPV6_PREFIX = 64


def address_key(address: str) -> str:
    """The key one client is counted, limited and banned under; raises ValueError for
    something that is not an IP address or network."""
    text = address.strip()
    if "/" in text:
        network = ipaddress.ip_network(text, strict=False)
        if network.version == 6 and network.prefixlen > IPV6_PREFIX:
            network = network.supernet(new_prefix=IPV6_PREFIX)
        return str(network) if network.num_addresses > 1 else str(network.network_address)
    parsed = ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/{IPV6_PREFIX}", strict=False))
    return str(parsed)


def peer_key(peername: object) -> str | None:
    """The key of a transport's `peername` extra info; None for a non-IP peer (a Unix
    socket in tests), which limits and bans then leave alone."""
    if not isinstance(peername, tuple) or not peername:
        return None
    try:
        return address_key(str(peername[0]))
    except ValueError:
        return None


def current_client() -> str | None:
    return CLIENT_ADDRESS.get()


def current_listener() -> str:
    return LISTENER.get()


def client_peername(writer: asyncio.StreamWriter) -> Any:
    """The client this connection serves, shaped like the transport's `peername` extra
    info: the PROXY header's source when a load balancer sent one, else the TCP peer."""
    proxied = PROXIED_PEER.get()
    return proxied if proxied is not None else writer.get_extra_info("peername")
