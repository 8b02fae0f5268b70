"""Listening sockets we bind ourselves (web/server.py, security/proxy_listener.py) give
accepted connections TCP_NODELAY, as asyncio.start_server's do: without it a kept-alive
HTTP response written in two pieces waited for the client's delayed ACK (40 ms each)."""

from __future__ import annotations

import asyncio
import socket

from postroom.security.proxy_listener import bind_tcp


async def _nodelay_of_accepted(listener: socket.socket) -> int:
    accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    server = await asyncio.get_running_loop().create_server(Probe, sock=listener)
    try:
        _, writer = await asyncio.open_connection(*listener.getsockname()[:2])
        value = await asyncio.wait_for(accepted, 10)
        writer.close()
        return value
    finally:
        server.close()
        await server.wait_closed()


async def test_connections_on_our_listeners_have_nagle_off() -> None:
    assert await _nodelay_of_accepted(bind_tcp("127.0.0.1", 0)) != 0


async def test_the_standard_library_helper_would_leave_it_on() -> None:
    # Why bind_tcp exists: asyncio sets TCP_NODELAY only when the socket's proto is TCP.
    plain = socket.create_server(("127.0.0.1", 0))
    assert plain.proto == 0
    assert await _nodelay_of_accepted(plain) == 0
