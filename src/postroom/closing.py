"""How the server ends a connection: its last reply first, then the socket.

Closing a TCP socket that still holds unread input makes the kernel send a reset, and a
reset can make the client's kernel throw away our last reply (a 421, a BYE) before the
client reads it — typically when the client pipelined a command while we were closing.
So, like Apache's "lingering close", a plain connection is half-closed first (FIN after
the reply) and whatever the client still sends is read and dropped until it closes its
side or LINGER_SECONDS pass. TLS transports cannot half-close; they close directly.
"""

from __future__ import annotations

import asyncio
import contextlib

from postroom.loops import within

LINGER_SECONDS = 2.0
_DISCARD_SIZE = 64 * 1024


async def close_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Idempotent: safe for both a session and the listener wrapper to call."""
    if not writer.is_closing() and writer.can_write_eof():
        with contextlib.suppress(OSError, RuntimeError, TimeoutError):
            writer.write_eof()
            await within(LINGER_SECONDS, _discard_until_eof(reader))
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()


async def _discard_until_eof(reader: asyncio.StreamReader) -> None:
    while await reader.read(_DISCARD_SIZE):
        pass
