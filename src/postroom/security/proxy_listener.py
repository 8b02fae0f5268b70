"""Listeners behind a TCP load balancer that speaks the PROXY protocol (issue 10).

Owns accepting connections when PROXY_PROTOCOL_TRUSTED_NETWORKS is set. A connection
whose TCP peer is in those networks must start with a PROXY header (proxy_protocol.py);
it is read off the raw socket before asyncio wraps it, and only then does the socket get
a transport — a TLS one on implicit-TLS listeners, because the header comes before the
handshake. Reading the header through a StreamReader and upgrading with
`StreamWriter.start_tls` would lose data: a balancer sends the header and the client's
ClientHello back to back, often in one segment, and what the StreamReader has buffered
never reaches the TLS layer.

Invariants: not a byte past the header is read before the transport exists (the parser
asks for lower bounds only); a trusted peer that sends no valid header within
HEADER_TIMEOUT is closed before any protocol byte is written; peers outside the networks
are served exactly as without the feature; every accepted socket is either handed to a
transport or closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from postroom.errors import BadSyntax
from postroom.security.proxy_protocol import ProxyHeader, parse_proxy_header

log = logging.getLogger("postroom.security")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

HEADER_TIMEOUT = 10.0  # a balancer sends the header at once; a client never sends one
TLS_HANDSHAKE_TIMEOUT = 30.0  # as the implicit-TLS listeners without the feature
ACCEPT_RETRY_DELAY = 1.0  # after EMFILE and the like, as asyncio's own servers do
BACKLOG = 100  # asyncio.start_server's default


def bind_tcp(host: str, port: int, backlog: int = BACKLOG) -> socket.socket:
    """A listening TCP socket as `asyncio.start_server(reuse_address=True)` makes one
    (SO_REUSEADDR, IPV6_V6ONLY), created with proto IPPROTO_TCP. Why the protocol number:
    accepted sockets inherit it, and asyncio turns Nagle off (TCP_NODELAY) only on sockets
    whose proto says TCP. `socket.create_server` leaves it 0, and then a response written
    in two pieces (HTTP head and body; TLS records) waited out the client's delayed ACK:
    40 ms on every kept-alive web and JMAP request."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


@dataclass(frozen=True, slots=True)
class Accepted:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    client: tuple[str, int] | None  # what the PROXY header named; None: the TCP peer


class ProxyListener(asyncio.AbstractServer):
    """One listening socket whose accepted sockets go, unread, to `on_accept`."""

    def __init__(self, sock: socket.socket, on_accept: Callable[[socket.socket], None]) -> None:
        self.sock = sock
        self._on_accept = on_accept
        self._loop = asyncio.get_running_loop()
        self._accepting: asyncio.Task[None] | None = None
        self._closed = False

    @classmethod
    def bind(cls, host: str, port: int,
             on_accept: Callable[[socket.socket], None]) -> ProxyListener:
        sock = bind_tcp(host, port)
        sock.setblocking(False)
        return cls(sock, on_accept)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return self._accepting is not None and not self._accepting.done()

    async def start_serving(self) -> None:
        if self._accepting is None and not self._closed:
            self._accepting = asyncio.create_task(self._accept_loop())

    async def serve_forever(self) -> None:
        await self.start_serving()
        await self.wait_closed()

    def close(self) -> None:
        self._closed = True
        if self._accepting is None:
            self.sock.close()
        else:
            # Closed once the pending accept has let go of it, not under its feet.
            self._accepting.add_done_callback(lambda _: self.sock.close())
            self._accepting.cancel()

    async def wait_closed(self) -> None:
        if self._accepting is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._accepting

    async def _accept_loop(self) -> None:
        while True:
            try:
                connection, _ = await self._loop.sock_accept(self.sock)
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                continue  # the client gave up before we took it
            except OSError as error:
                log.error("accepting on port %s failed: %s", self.port, error)
                await asyncio.sleep(ACCEPT_RETRY_DELAY)
                continue
            self._on_accept(connection)


def is_trusted_proxy(address: str, networks: Sequence[Network]) -> bool:
    try:
        parsed = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        parsed = parsed.ipv4_mapped  # a dual-stack socket's spelling of an IPv4 peer
    return any(parsed in network for network in networks)


async def read_proxy_header(sock: socket.socket) -> ProxyHeader:
    """The header at the start of `sock`, read exactly (nothing after it is consumed).
    Raises BadSyntax for a malformed header or a peer that closes inside it."""
    loop = asyncio.get_running_loop()
    data = b""
    while True:
        step = parse_proxy_header(data)
        if isinstance(step, ProxyHeader):
            return step
        chunk = await loop.sock_recv(sock, step.at_least)
        if not chunk:
            raise BadSyntax("connection closed inside the PROXY header")
        data += chunk


async def open_streams(sock: socket.socket, tls: ssl.SSLContext | None,
                       limit: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """asyncio streams over an accepted socket, after the TLS handshake when `tls`."""
    loop = asyncio.get_running_loop()
    connected: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
        loop.create_future())

    def on_connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connected.set_result((reader, writer))  # not a coroutine: no task, the caller goes on

    # A connected-callback marks the protocol as the server side, which is what
    # StreamWriter.start_tls asks later for STARTTLS on 25/587/143/110.
    protocol = asyncio.StreamReaderProtocol(asyncio.StreamReader(limit=limit), on_connected)
    if tls is None:
        await loop.connect_accepted_socket(lambda: protocol, sock)
    else:
        await loop.connect_accepted_socket(lambda: protocol, sock, ssl=tls,
                                           ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT)
    return await connected


async def accept_proxied(sock: socket.socket, trusted: Sequence[Network],
                         tls: ssl.SSLContext | None, limit: int,
                         listener: str) -> Accepted | None:
    """The streams of an accepted socket and the client it serves, or None when the
    connection was closed here (no valid header from a balancer, failed handshake)."""
    is_handed_over = False
    try:
        peer = sock.getpeername()
        client: tuple[str, int] | None = None
        if is_trusted_proxy(str(peer[0]), trusted):
            header = await _header_or_none(sock, str(peer[0]), listener)
            if header is None:
                return None
            if header.source is not None:
                client = (header.source.address, header.source.port)
        is_handed_over = True  # from here the transport closes the socket, whatever happens
        reader, writer = await open_streams(sock, tls, limit)
        return Accepted(reader, writer, client)
    except (OSError, TimeoutError) as error:  # ssl.SSLError is an OSError
        log.debug("connection on %s ended before it was served: %r", listener, error)
        return None
    finally:
        if not is_handed_over:
            sock.close()


async def _header_or_none(sock: socket.socket, peer: str, listener: str) -> ProxyHeader | None:
    try:
        async with asyncio.timeout(HEADER_TIMEOUT):
            return await read_proxy_header(sock)
    except (BadSyntax, TimeoutError) as error:
        reason = error if isinstance(error, BadSyntax) else f"none within {HEADER_TIMEOUT}s"
        log.warning("balancer=%s on %s: no valid PROXY header (%s): closed", peer, listener,
                    reason)
        return None
