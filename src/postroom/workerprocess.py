"""One worker process's life: `python -m postroom.workerprocess`, started only by
`WorkerPool` (workers.py), which holds the design (what a worker inherits, the channel).

Owns reading the `WorkerSetup` from stdin, running an `App` in the worker role on the
inherited listeners, announcing `ready`, and stopping on SIGTERM/SIGINT or when the main
process goes away. The top of the house: it imports app.py; nothing imports it.
"""

from __future__ import annotations

import asyncio
import pickle
import signal
import socket
import sys

from postroom.app import App
from postroom.collector import settle_collector
from postroom.logsetup import setup_logging
from postroom.loops import fast_loop_factory
from postroom.workers import CHANNEL_LIMIT, READY, WorkerRole, WorkerSetup, follow_main


def main() -> None:
    """`python -m postroom.workerprocess`: run one worker (started by WorkerPool)."""
    # stdin is a pipe from the parent process (WorkerPool._spawn), nobody else's data.
    setup: WorkerSetup = pickle.load(sys.stdin.buffer)  # noqa: S301
    setup_logging(setup.config.log_level, setup.log_name, setup.config.timezone)
    with asyncio.Runner(loop_factory=fast_loop_factory()) as runner:
        runner.run(serve_worker(setup))


async def serve_worker(setup: WorkerSetup) -> None:
    reader, writer = await asyncio.open_connection(
        sock=socket.socket(fileno=setup.channel_fd), limit=CHANNEL_LIMIT)
    listeners = {name: [socket.socket(fileno=fd) for fd in fds]
                 for name, fds in setup.listener_fds.items()}
    app = App(setup.config, worker=WorkerRole(setup.index, listeners, writer))
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):  # Ctrl-C reaches the whole group
        loop.add_signal_handler(signum, stop_requested.set)
    await app.start()
    settle_collector()
    writer.write(f"{READY}\n".encode("ascii"))
    main_gone = asyncio.create_task(follow_main(reader, app.runtime.feed))  # until EOF
    stopping = asyncio.create_task(stop_requested.wait())
    await asyncio.wait({main_gone, stopping}, return_when=asyncio.FIRST_COMPLETED)
    main_gone.cancel()
    stopping.cancel()
    await app.stop()
    writer.close()


if __name__ == "__main__":
    main()
