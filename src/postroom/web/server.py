"""The web console's HTTPS listener (issue 21): uvicorn's HTTP/1.1 protocol (h11) on
sockets bound here, in postroom's own event loop — no second loop, no thread.

Owns binding WEB_PORT on every LISTEN_ADDRESS, the TLS context (TlsContexts'
`listener_context`: SNI and certificate hot reload as on the mail ports), the
per-connection limits, and the drain. app.py starts it with the other listeners (main
process only) and stops it on SIGTERM (docs/decisions/0053-web-stack.md).

Limits: a request head over MAX_HEAD bytes is refused with 431 — counted here as it
arrives, because h11's own bound (max_incomplete_event_size, 400) holds only for a head
still incomplete after a read, and a head arriving whole in one read passes at any
size; a body over
WEB_MAX_BODY is 413 (middleware.py); each connection counts in the listeners' shared
ConnectionLimiter (MAX_CONNECTIONS, MAX_CONNECTIONS_PER_IP; a trusted proxy counts only
towards the total) and a refused one gets 503; a client must send a whole request head
within HEAD_TIMEOUT of connecting (or of the previous answer) and finish its request
within REQUEST_TIMEOUT, else the connection is closed (slow clients); idle keep-alive
connections close after KEEP_ALIVE seconds.

WebSocket (JMAP over WebSocket, RFC 8887: jmap/websocket.py) is served by uvicorn's
wsproto protocol: an upgraded connection leaves the head and request deadlines (the
WebSocket keepalive pings, every 20 s, find dead peers instead) and keeps its limiter
slot until it closes; a message over MAX_WS_MESSAGE bytes closes it (1009), and
permessage-deflate is not offered (a small compressed frame may inflate past any cap
before uvicorn counts it). A streamed answer (JMAP EventSource) is not cut off by
REQUEST_TIMEOUT once the request came whole and the answer has begun: that deadline
bounds a slow client's request, not our answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
from collections.abc import Callable
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.websockets.wsproto_impl import WSProtocol

from postroom.security.limits import ConnectionLimiter, Refusal
from postroom.security.peer import peer_key
from postroom.security.proxy_listener import bind_tcp
from postroom.web.application import build_app
from postroom.web.clients import is_trusted_proxy
from postroom.web.context import WebContext

log = logging.getLogger("postroom.web")

MAX_HEAD = 16 * 1024  # bytes of request line + header fields
HEAD_TIMEOUT = 20.0  # seconds to send a request head
REQUEST_TIMEOUT = 120.0  # seconds from connection (or last answer) to the request's answer
KEEP_ALIVE = 15  # seconds an idle keep-alive connection stays open
MAX_WS_MESSAGE = 16 * 1024 * 1024  # bytes of one WebSocket message (JMAP's cap is lower)
HANDSHAKE_TIMEOUT = 30.0  # seconds for the TLS handshake (as the mail ports)
SHUTDOWN_TIMEOUT = 3.0  # seconds a closing TLS connection waits for the client's close_notify
REFUSED = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\n"
           b"connection: close\r\ncontent-length: %d\r\n\r\n%s")
HEAD_TOO_LARGE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                  b"content-type: text/plain\r\nconnection: close\r\n"
                  b"content-length: 29\r\n\r\nrequest header is too large\r\n")


class WebServer:
    """The listener: `start()` binds and serves, `stop()` drains."""

    def __init__(self, ctx: WebContext, limiter: ConnectionLimiter,
                 drain_seconds: float = 30.0, app: ASGIApp | None = None) -> None:
        self.ctx = ctx
        self.limiter = limiter
        config = uvicorn.Config(
            app if app is not None else build_app(ctx), http="h11", ws="wsproto",
            lifespan="off", log_config=None, access_log=False, server_header=False,
            proxy_headers=False, timeout_keep_alive=KEEP_ALIVE,
            timeout_graceful_shutdown=max(1, int(drain_seconds)),
            h11_max_incomplete_event_size=MAX_HEAD, ws_max_size=MAX_WS_MESSAGE,
            ws_per_message_deflate=False)
        config.load()
        config.ws_protocol_class = GuardedWSProtocol
        config.ssl = ctx.runtime.tls.listener_context()
        config.http_protocol_class = functools.partial(  # type: ignore[assignment]
            GuardedProtocol, listener=self)
        self._server = uvicorn.Server(config)
        # What Server.serve() sets before startup (lifespan "off": a no-op) and shutdown()
        # uses; serve() itself is not used: it would run its own loop and take the signals.
        self._server.lifespan = config.lifespan_class(config)
        self.sockets: list[socket.socket] = []

    async def start(self) -> list[tuple[str, int]]:
        """Bind WEB_PORT on every LISTEN_ADDRESS and serve; the (host, port) pairs bound."""
        config = self.ctx.config
        bound = []
        try:
            for host in config.listen_addresses:
                sock = bind_tcp(host, config.web_port, backlog=256)  # Nagle off: see there
                self.sockets.append(sock)
                bound.append((host, sock.getsockname()[1]))
            await self._serve()
        except BaseException:
            for sock in self.sockets:
                sock.close()
            raise
        for host, port in bound:
            log.info("web console listening on https://%s:%d/", host, port)
        return bound

    async def _serve(self) -> None:
        """What uvicorn's `Server.startup(sockets=…)` does, plus TLS timeouts it does not
        pass: a handshake within HANDSHAKE_TIMEOUT, and a closing connection whose client
        never answers TLS close_notify released after SHUTDOWN_TIMEOUT (asyncio's default
        of 30 s would hold its limiter slot, and the drain, that long)."""
        server, config = self._server, self._server.config
        loop = asyncio.get_running_loop()

        def create_protocol() -> asyncio.Protocol:
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=server.server_state, app_state={})

        server.servers = [
            await loop.create_server(create_protocol, sock=sock, ssl=config.ssl,
                                     backlog=config.backlog,
                                     ssl_handshake_timeout=HANDSHAKE_TIMEOUT,
                                     ssl_shutdown_timeout=SHUTDOWN_TIMEOUT)
            for sock in self.sockets]
        server.started = True

    async def stop(self) -> None:
        """Stop accepting, let answers in progress finish (up to the drain time), close."""
        if not self._server.started:
            return
        with contextlib.suppress(Exception):
            await self._server.shutdown(sockets=self.sockets)

    def connection_key(self, peername: Any) -> str | None:
        """The limiter's key of a new connection: None (total only) for a trusted proxy,
        whose clients are told apart per request (clients.py)."""
        key = peer_key(peername)
        if key is not None and is_trusted_proxy(str(peername[0]),
                                                self.ctx.config.web_proxy_networks):
            return None
        return key


class GuardedProtocol(H11Protocol):
    """uvicorn's h11 protocol plus the connection limit and the slow-client deadlines."""

    def __init__(self, *args: Any, listener: WebServer, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._listener = listener
        self._admitted = False
        self._key: str | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._head_bytes = 0  # bytes of the request head being received (MAX_HEAD)
        self._head_tail = b""  # the last bytes already counted, for a split CRLFCRLF
        self._awaiting_head = True

    def data_received(self, data: bytes) -> None:
        if self._awaiting_head and self._head_too_large(data):
            log.info("client=%s web request head over %d bytes", self._key, MAX_HEAD)
            self.transport.write(HEAD_TOO_LARGE)
            self.transport.close()
            return
        super().data_received(data)

    def _head_too_large(self, data: bytes) -> bool:
        """Count the head's bytes up to its blank line; past it, the request is h11's."""
        seen = self._head_tail + data
        end = seen.find(b"\r\n\r\n")
        if end < 0:
            self._head_bytes += len(data)
            self._head_tail = seen[-3:]
            return self._head_bytes > MAX_HEAD
        size = self._head_bytes - len(self._head_tail) + end + 4
        self._awaiting_head, self._head_bytes, self._head_tail = False, 0, b""
        return size > MAX_HEAD

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._key = self._listener.connection_key(transport.get_extra_info("peername"))
        refusal = self._listener.limiter.admit(self._key)
        if refusal is not None:
            self._refuse(transport, refusal)
            return
        self._admitted = True
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._admitted:
            self._admitted = False
            self._listener.limiter.release(self._key)
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._awaiting_head = True  # a keep-alive connection's next request
        self._arm()

    def _refuse(self, transport: asyncio.Transport, refusal: Refusal) -> None:
        log.info("client=%s refused on web: %s", self._key, refusal.value)
        text = refusal.value.encode()
        transport.write(REFUSED % (len(text), text))
        transport.close()

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(HEAD_TIMEOUT, self._head_due)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _head_due(self) -> None:
        """No request in progress after HEAD_TIMEOUT: the head never came whole."""
        if self.cycle is None or self.cycle.response_complete:
            self._close_slow("request head")
            return
        self._deadline = self.loop.call_later(REQUEST_TIMEOUT - HEAD_TIMEOUT,
                                              self._request_due)

    def _request_due(self) -> None:
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            return
        if cycle.response_started and not cycle.more_body:
            return  # the request came whole; the answer streams (EventSource): not slow
        self._close_slow("request")

    def handle_websocket_upgrade(self, event: Any) -> None:
        """The connection becomes a WebSocket: the deadlines stop, and the limiter slot is
        now released when the WebSocket connection is lost."""
        self._disarm()
        super().handle_websocket_upgrade(event)
        protocol = self.transport.get_protocol()
        if self._admitted and isinstance(protocol, GuardedWSProtocol):
            self._admitted = False
            protocol.on_lost = functools.partial(self._listener.limiter.release, self._key)

    def _close_slow(self, what: str) -> None:
        if not self.transport.is_closing():
            log.info("client=%s web connection closed: %s too slow", self._key, what)
            self.transport.abort()


class GuardedWSProtocol(WSProtocol):
    """uvicorn's wsproto protocol, releasing the connection's limiter slot when lost."""

    on_lost: Callable[[], None] | None = None

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        release, self.on_lost = self.on_lost, None
        if release is not None:
            release()
