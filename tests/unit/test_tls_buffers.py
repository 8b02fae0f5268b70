"""tls/buffers.py: asyncio's per-connection TLS buffer is capped, never raised, and bulk
data still crosses a TLS stream intact with the small buffer (issue 8)."""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import hashlib
import ssl
from collections.abc import Iterator

import pytest
import trustme

from postroom.tls.buffers import TLS_READ_BUFFER, limit_tls_read_buffer


@pytest.fixture
def restore_max_size() -> Iterator[None]:
    before = asyncio.sslproto.SSLProtocol.max_size
    yield
    asyncio.sslproto.SSLProtocol.max_size = before


@pytest.mark.usefixtures("restore_max_size")
def test_limit_only_lowers() -> None:
    asyncio.sslproto.SSLProtocol.max_size = 256 * 1024
    assert limit_tls_read_buffer() == TLS_READ_BUFFER
    assert limit_tls_read_buffer(64 * 1024) == TLS_READ_BUFFER  # never raised again
    assert limit_tls_read_buffer(2048) == 2048
    with pytest.raises(ValueError):
        limit_tls_read_buffer(512)


@pytest.mark.usefixtures("restore_max_size")
async def test_bulk_data_crosses_tls_intact() -> None:
    limit_tls_read_buffer()
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)
    payload = bytes(range(256)) * 4096 + b"\r\n"  # 1 MiB: many records, many reads
    received: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.set_result(await reader.readexactly(len(payload)))
        writer.write(hashlib.sha256(received.result()).digest())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_context)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_context,
                                                   server_hostname="localhost")
    writer.write(payload)
    digest = await asyncio.wait_for(reader.readexactly(32), 30)
    assert await received == payload and digest == hashlib.sha256(payload).digest()
    writer.close()
    server.close()
    await server.wait_closed()
