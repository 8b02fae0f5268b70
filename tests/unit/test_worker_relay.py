"""The main process's relay of changes to IMAP workers (workers.py, decision 0059), over
real socketpairs: every change of the main feed reaches each IMAP worker but the one it
came from; SMTP-only workers get none; a worker that stops reading is skipped once its
channel holds CHANNEL_BACKLOG bytes (logged once), and fed again once it caught up."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from postroom import workers
from postroom.config import Config
from postroom.store.api import Change
from postroom.store.changes import ChangeFeed
from postroom.workers import WorkerPool, _Worker, parse_line, render_change


@dataclass
class Relay:
    pool: WorkerPool
    feed: ChangeFeed
    worker_ends: dict[int, socket.socket]  # what each worker would read


@pytest.fixture
async def relay(config: Config) -> AsyncIterator[Relay]:
    """Main feed and pool for IMAP_PROCESSES=3, SMTP_PROCESSES=4: workers 1 and 2 serve
    IMAP, worker 3 SMTP only. The workers are the far ends of socketpairs."""
    feed = ChangeFeed()
    pool = WorkerPool(config.model_copy(update={"imap_processes": 3, "smtp_processes": 4}),
                      {}, feed, lambda: None)
    ends: dict[int, socket.socket] = {}
    for index in (1, 2, 3):
        ours, theirs = socket.socketpair()
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        theirs.setblocking(False)
        reader, writer = await asyncio.open_connection(sock=ours)
        # No process: the relay only writes to the channel.
        pool._workers[index] = _Worker(index, None, reader, writer)  # type: ignore[arg-type]
        ends[index] = theirs
    yield Relay(pool, feed, ends)
    channels = [worker.writer for worker in pool._workers.values()]
    pool._workers.clear()  # no processes to signal: stop() only stops watching the feed
    await pool.stop(grace_seconds=1)
    assert not feed._watchers
    for writer in channels:
        writer.close()
    for end in ends.values():
        end.close()


async def received(end: socket.socket) -> list[Change | str | None]:
    await asyncio.sleep(0.05)  # let the transports flush
    data = b""
    while True:
        try:
            chunk = end.recv(1 << 20)
        except BlockingIOError:
            break
        if not chunk:
            break
        data += chunk
    return [parse_line(line) for line in data.splitlines(keepends=True)]


async def test_each_imap_worker_hears_every_change_but_its_own(relay: Relay) -> None:
    from_main = Change(1, 10, frozenset({"append"}), 5)
    relay.feed.publish(from_main)  # the main process's own session or delivery
    from_worker = Change(1, 10, frozenset({"flags"}), 6)
    ready = asyncio.get_running_loop().create_future()
    relay.pool._relay(relay.pool._workers[1], from_worker, ready)  # worker 1 announced it
    assert await received(relay.worker_ends[1]) == [from_main]
    assert await received(relay.worker_ends[2]) == [from_main, from_worker]
    assert await received(relay.worker_ends[3]) == []  # SMTP only: nothing to hear


async def test_a_worker_that_reads_nothing_is_skipped_then_fed_again(
        relay: Relay, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    monkeypatch.setattr(workers, "CHANNEL_BACKLOG", 10_000)
    line = len(render_change(Change(1, 10, frozenset({"append"}), 1)))
    stuck = relay.pool._workers[2].writer.transport
    with caplog.at_level(logging.WARNING, logger="postroom"):
        for modseq in range(1, 5001):  # ~170 KB: far more than the socket buffers hold
            relay.feed.publish(Change(1, 10, frozenset({"append"}), modseq))
            assert stuck.get_write_buffer_size() <= 10_000 + line
    assert stuck.get_write_buffer_size() > 10_000  # it did fall behind
    warned = [record.getMessage() for record in caplog.records]
    for index in (1, 2):  # neither read during the loop: each is told about once
        assert warned.count(f"worker {index} reads no changes; its IDLE sessions hear "
                            "of changes late") == 1
    assert not any("worker 3" in message for message in warned)  # SMTP only
    # Worker 2 catches up: its backlog drains, and the next change reaches it.
    caught_up = []
    for _ in range(200):
        caught_up += await received(relay.worker_ends[2])
        if stuck.get_write_buffer_size() == 0:
            break
    assert stuck.get_write_buffer_size() == 0
    relay.feed.publish(Change(1, 10, frozenset({"append"}), 9999))
    assert Change(1, 10, frozenset({"append"}), 9999) in await received(relay.worker_ends[2])
    assert 2 not in relay.pool._behind
