"""What a session's wait for its next command costs: `asyncio.wait` over a read task and a
shutdown task (SMTP's and POP3's reads before issue 22's round two) against wakers.py's
`Waker` (a read in the session's own task, woken by cancellation).

Owns one manual measurement (not part of `make bench`): a loopback server answers N
one-line commands from a client in the same process, each way in turn; it prints the
process CPU per command, both sides together (the client's share is the same in both).
Usage: `.venv/bin/python -m bench.readwait [--commands 20000]`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from postroom.wakers import Waker

READ_SIZE = 65536


async def read_with_wait(reader: asyncio.StreamReader, stopping: asyncio.Event) -> bytes:
    reading = asyncio.ensure_future(reader.read(READ_SIZE))
    waiting = asyncio.ensure_future(stopping.wait())
    await asyncio.wait({reading, waiting}, timeout=300, return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    return reading.result()


async def measure(kind: str, commands: int) -> float:
    stopping = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        waker = Waker()
        for _ in range(commands):
            if kind == "asyncio.wait":
                await read_with_wait(reader, stopping)
            else:
                await waker.read(reader, READ_SIZE, 300)
            writer.write(b"250 ok\r\n")
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.process_time()
    for _ in range(commands):
        writer.write(b"NOOP\r\n")
        await reader.readline()
    cpu = time.process_time() - started
    writer.close()
    server.close()
    return cpu / commands * 1e6


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--commands", type=int, default=20000)
    args = parser.parse_args()
    for kind in ("asyncio.wait", "Waker", "asyncio.wait", "Waker"):
        print(f"{kind:>12}: {asyncio.run(measure(kind, args.commands)):6.1f} µs CPU per command")
    return 0


if __name__ == "__main__":
    sys.exit(main())
