"""Worker processes: with SMTP_PROCESSES=N or IMAP_PROCESSES=M, max(N, M) processes
(the main one included) accept SMTP and IMAP connections.

Owns starting the max(N, M)-1 worker processes, what they inherit, the channel between
them and the main process, restarting a worker that dies, and the worker role an `App`
takes in one. A worker's own life (`python -m postroom.workerprocess`, started only by
the main process) is workerprocess.py: it imports `App`, which imports this pool, so
the two stay apart.

Why (issues 8 and 22): one Python process runs on one core at most. Receiving mail is
CPU-bound (~2 ms per 4 KB message in system calls, the SMTP exchange, the MIME meta and
SQLite), and so is serving IMAP (TLS records, parsing, rendering FETCH answers): on a
machine with more cores one process leaves them idle where Postfix runs an smtpd per
connection and Dovecot an imap process per user.

How:
- The main process binds every listener, then starts each worker with listening sockets
  as inherited descriptors: smtp, submission and submissions for workers 1…N-1, imap and
  imaps for workers 1…M-1; plus one end of a socketpair (the channel). Its Config goes
  over stdin, pickled. Every process accepts on the same sockets: a connection goes to
  whichever process is waiting first, so a busy process takes fewer. (SO_REUSEPORT, one
  socket per process with the kernel splitting connections by hash, was slower: a busy
  process still gets its share; docs/decisions/0024-so-reuseport-not-kept.md.)
- A worker is an `App` in the worker role (app.py): its own store connections, TLS,
  resolver, and the SMTP and IMAP sessions of the sockets it inherited; no POP3,
  ManageSieve, web or queue deliveries, no pid file, and it clears no spool leftovers
  (only the main process does, before starting workers: a worker's in-flight files are
  not leftovers).
- Worker → main lines on the channel: `ready` once it listens; `change ACCOUNT MAILBOX
  KINDS MODSEQ` after each committed change on SQLite (the main publishes it into its
  ChangeFeed, so IMAP IDLE and POP3 learn of a worker's deliveries at once; on
  PostgreSQL, NOTIFY already reaches every process); `queue` after outbound mail was
  queued (the main's queue worker sends it now instead of at its next poll).
- Main → worker lines, on SQLite with IMAP workers: every change the main's feed
  publishes (its own sessions' and deliveries', and the other workers') goes to each
  IMAP worker but the one it came from, which publishes it into its own feed: IDLE in
  any process hears of a change made in any other. A worker so far behind that its
  channel holds CHANNEL_BACKLOG unread bytes misses changes (logged): its sessions
  still see them at their next command, only IDLE hears late.
- SQLite serialises writes across processes with its file lock (busy_timeout) and the
  batch flock (store/sqlitebatch.py); UIDs and MODSEQs are allocated inside those
  transactions, so they stay race-free. What IMAP keeps per process (\\Recent claims,
  the flag-column cache, shared refresh reads; imap/recent.py, flagcache.py,
  refreshshare.py) is keyed so that it holds with several processes as with several
  nodes: \\Recent is per process, the rest is checked against HIGHESTMODSEQ.
- Stopping: the main process sends SIGTERM to every worker, which drains its sessions as
  `serve` does, and waits for them. A worker that exits on its own is restarted after
  `RESTART_DELAY`. A worker whose channel closes (the main process died) stops.
- Connection limits (MAX_CONNECTIONS, MAX_CONNECTIONS_PER_IP) count per process, as they
  count per node with several nodes; failed logins and bans are shared through the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import signal
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from postroom.config import Config
from postroom.errors import PostroomError
from postroom.loops import within
from postroom.store.api import Change
from postroom.store.changes import ChangeFeed

log = logging.getLogger("postroom")

SMTP_LISTENERS = frozenset({"smtp", "submission", "submissions"})
IMAP_LISTENERS = frozenset({"imap", "imaps"})
RESTART_DELAY = 1.0
START_TIMEOUT = 60.0
CHANNEL_LIMIT = 64 * 1024
CHANNEL_BACKLOG = 4 * 1024 * 1024  # unread change lines kept for one worker, at most
READY, QUEUED = "ready", "queue"


# -- the channel's lines (no I/O) -----------------------------------------------------


def render_change(change: Change) -> bytes:
    kinds = ",".join(sorted(change.kinds)) or "-"
    return (f"change {change.account_id} {change.mailbox_id} {kinds} {change.modseq}\n"
            ).encode("ascii")


def parse_line(line: bytes) -> Change | str | None:
    """A Change, READY or QUEUED; None for a line this version does not know."""
    words = line.decode("ascii", "replace").split()
    if len(words) == 1 and words[0] in (READY, QUEUED):
        return words[0]
    if (len(words) != 5 or words[0] != "change"
            or not all(word.isdigit() for word in (words[1], words[2], words[4]))):
        return None
    kinds = frozenset(kind for kind in words[3].split(",") if kind not in ("", "-"))
    return Change(int(words[1]), int(words[2]), kinds, int(words[4]))


# -- the worker's side --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkerSetup:
    """What a worker starts from (pickled over its stdin by the main process)."""

    config: Config
    index: int  # 1…max(N, M)-1, in log lines as [smtp-INDEX] ([imap-INDEX]: IMAP only)
    channel_fd: int
    listener_fds: dict[str, list[int]]  # listener name → inherited listening sockets

    @property
    def log_name(self) -> str:
        serves_smtp = any(name in SMTP_LISTENERS for name in self.listener_fds)
        return f"{'smtp' if serves_smtp else 'imap'}-{self.index}"


class _ForwardingFeed(ChangeFeed):
    """The worker's feed on SQLite: its own sessions, and the main process (which relays
    to the other workers); what the main process sends is published here only."""

    def __init__(self, channel: asyncio.StreamWriter) -> None:
        super().__init__()
        self._channel = channel

    def publish(self, change: Change) -> None:
        super().publish(change)
        if not self._channel.is_closing():
            self._channel.write(render_change(change))

    def publish_relayed(self, change: Change) -> None:
        super().publish(change)


async def follow_main(reader: asyncio.StreamReader, feed: ChangeFeed) -> None:
    """The worker's side of main → worker lines, until the main process is gone (EOF):
    each change is published into the worker's own feed."""
    with contextlib.suppress(ConnectionError):
        while line := await reader.readline():
            change = parse_line(line)
            if isinstance(change, Change) and isinstance(feed, _ForwardingFeed):
                feed.publish_relayed(change)


@dataclass(slots=True)
class WorkerRole:
    """How an `App` in a worker process differs from the main one (app.py)."""

    index: int
    listeners: dict[str, list[socket.socket]]
    channel: asyncio.StreamWriter

    def make_feed(self, config: Config) -> ChangeFeed:
        if config.storage == "postgresql":
            return ChangeFeed()  # NOTIFY carries changes to every process already
        return _ForwardingFeed(self.channel)

    def announce_queued(self) -> None:
        if not self.channel.is_closing():
            self.channel.write(f"{QUEUED}\n".encode("ascii"))


# -- the main process's side ------------------------------------------------------------


@dataclass(slots=True)
class _Worker:
    index: int
    process: asyncio.subprocess.Process
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    has_listened: bool = False


def worker_count(config: Config) -> int:
    """Processes started besides the main one."""
    return max(config.smtp_processes, config.imap_processes) - 1


class WorkerPool:
    """Starts the workers, relays what they announce (and, to IMAP workers, the main
    feed's changes), restarts and stops them."""

    def __init__(self, config: Config, listener_fds: Mapping[str, list[int]],
                 feed: ChangeFeed, kick_queue: Callable[[], None]) -> None:
        self._config = config
        self._listener_fds = {name: list(fds) for name, fds in listener_fds.items()
                              if name in SMTP_LISTENERS | IMAP_LISTENERS}
        self._feed = feed
        self._kick_queue = kick_queue
        self._workers: dict[int, _Worker] = {}
        self._watchers: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._relaying_from: int | None = None  # the worker whose change is being published
        self._behind: set[int] = set()  # workers told they missed changes (logged once)
        self._unwatch: Callable[[], None] | None = None
        if config.storage != "postgresql" and config.imap_processes > 1:
            self._unwatch = feed.watch_all(self._to_imap_workers)

    def _fds_for(self, index: int) -> dict[str, list[int]]:
        served = ((SMTP_LISTENERS if index < self._config.smtp_processes else frozenset())
                  | (IMAP_LISTENERS if index < self._config.imap_processes else frozenset()))
        return {name: fds for name, fds in self._listener_fds.items() if name in served}

    def _to_imap_workers(self, change: Change) -> None:
        """Main feed → every IMAP worker but the one the change came from."""
        line = b""
        for worker in self._workers.values():
            if (worker.index == self._relaying_from
                    or worker.index >= self._config.imap_processes
                    or worker.writer.is_closing()):
                continue
            if worker.writer.transport.get_write_buffer_size() > CHANNEL_BACKLOG:
                if worker.index not in self._behind:
                    self._behind.add(worker.index)
                    log.warning("worker %d reads no changes; its IDLE sessions hear of "
                                "changes late", worker.index)
                continue
            self._behind.discard(worker.index)
            worker.writer.write(line or (line := render_change(change)))

    @property
    def pids(self) -> list[int]:
        return [worker.process.pid for worker in self._workers.values()]

    async def start(self) -> None:
        """Returns once every worker listens; raises if one cannot start."""
        await asyncio.gather(*(self._start_worker(index)
                               for index in range(1, worker_count(self._config) + 1)))

    async def _start_worker(self, index: int) -> None:
        worker = await self._spawn(index)
        self._workers[index] = worker
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        watcher = asyncio.create_task(self._watch(worker, ready))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        try:
            await within(START_TIMEOUT, ready)
        except BaseException as error:
            with contextlib.suppress(ProcessLookupError):
                worker.process.kill()
            if isinstance(error, TimeoutError):
                raise PostroomError(f"worker {index} did not start within "
                                    f"{START_TIMEOUT:.0f} s") from None
            raise
        log.info("worker %d (pid %d) accepting %s connections", index, worker.process.pid,
                 "/".join(sorted(self._fds_for(index))))

    async def _spawn(self, index: int) -> _Worker:
        ours, theirs = socket.socketpair()
        fds = self._fds_for(index)
        inherited = [theirs.fileno(), *(fd for listed in fds.values() for fd in listed)]
        setup = WorkerSetup(self._config, index, theirs.fileno(), fds)
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "postroom.workerprocess", stdin=asyncio.subprocess.PIPE,
                pass_fds=inherited)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()  # the worker has its copy
        assert process.stdin is not None
        # A child that exits at once closes the pipe first (uvloop then raises
        # RuntimeError); its exit status is what `_watch` reports.
        with contextlib.suppress(ConnectionError, RuntimeError):
            process.stdin.write(pickle.dumps(setup))
            await process.stdin.drain()
            process.stdin.close()
        reader, writer = await asyncio.open_connection(sock=ours, limit=CHANNEL_LIMIT)
        return _Worker(index, process, reader, writer)

    async def _watch(self, worker: _Worker, ready: asyncio.Future[None]) -> None:
        """Relay the worker's lines until it exits; then restart it unless stopping."""
        with contextlib.suppress(ConnectionError):
            while line := await worker.reader.readline():
                self._relay(worker, parse_line(line), ready)
        status = await worker.process.wait()
        worker.writer.close()
        if not worker.has_listened:  # a start-up failure: start() reports it, no restart
            if not ready.done():  # `serve` prints it as one line, no traceback
                ready.set_exception(PostroomError(
                    f"worker {worker.index} exited with status {status} before it "
                    "listened (its error is logged above)"))
            return
        if self._stopping:
            return
        log.error("worker %d (pid %d) exited with status %s; restarting it",
                  worker.index, worker.process.pid, status)
        await asyncio.sleep(RESTART_DELAY)
        if not self._stopping:
            try:
                await self._start_worker(worker.index)
            except Exception as error:  # the next connection still finds the other processes
                log.error("worker %d could not be restarted: %s", worker.index, error)

    def _relay(self, worker: _Worker, item: Change | str | None,
               ready: asyncio.Future[None]) -> None:
        if isinstance(item, Change):
            self._relaying_from = worker.index  # not sent back to where it came from
            try:
                self._feed.publish(item)
            finally:
                self._relaying_from = None
        elif item == QUEUED:
            self._kick_queue()
        elif item == READY:
            worker.has_listened = True
            if not ready.done():
                ready.set_result(None)

    async def stop(self, grace_seconds: float) -> None:
        """SIGTERM to every worker; those still running after `grace_seconds` are killed."""
        self._stopping = True
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        workers = list(self._workers.values())
        for worker in workers:
            with contextlib.suppress(ProcessLookupError):
                worker.process.send_signal(signal.SIGTERM)
        waits = [asyncio.create_task(worker.process.wait()) for worker in workers]
        if waits:
            _, late = await asyncio.wait(waits, timeout=grace_seconds)
            for worker, wait in zip(workers, waits, strict=True):
                if wait in late:
                    log.warning("worker %d did not stop in %ss; killed", worker.index,
                                grace_seconds)
                    with contextlib.suppress(ProcessLookupError):
                        worker.process.kill()
            await asyncio.gather(*waits)
        for watcher in list(self._watchers):
            watcher.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
