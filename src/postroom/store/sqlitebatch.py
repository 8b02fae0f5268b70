"""Group commit for the SQLite backend: the hot writes of many sessions in one transaction.

Owns a second SQLite connection, used only on its own thread, and the queue of write jobs
that run on it. APPEND/delivery, STORE and EXPUNGE are small (a few statements), but at
one thread hop per statement, all while holding the store's write lock, each write of ten
busy IMAP sessions would wait behind the others' hops. Here every job is a plain
function of the connection; whatever jobs are waiting when the writer is free run as one
batch, in one thread hop:

    BEGIN IMMEDIATE; (SAVEPOINT; job; RELEASE) for each job; COMMIT

(a batch of one job needs no savepoint: the transaction is its own).

Invariants:
- A job's caller hears its result only after the COMMIT that holds it (synchronous=FULL:
  on disk), so no OK/250 is sent for anything not durable. The exception is a job run
  with `durable=False` (flag-only changes, decision 0052, Dovecot's `mail_fsync =
  optimized`): such jobs commit in batches of their own, ahead of the durable jobs
  waiting with them, with synchronous=NORMAL — in the WAL, which survives a killed
  process, fsynced by the next FULL commit or checkpoint (the WAL is one file written
  in order, so that fsync covers every frame before it), not proof against a power cut.
  Such a job first tries to run at once on the event loop, on a connection of its own
  (busy_timeout 0, no auto-checkpoint) holding the cross-process flock through its own
  descriptor, taken without waiting: a commit without an fsync takes a fraction of a
  millisecond, where the hop to the batch thread and back costs several under load (GIL
  handoffs). It may do so while a batch holds the asyncio write lock but is not inside
  its transaction (writing blobs, or in a thread hop): the flock keeps the two apart, and
  the batch thread, finding it taken, waits for it as for another process. Whenever it
  would wait (flock taken, SQLite busy, or a non-batch write holding the write lock) it
  tries again LOOP_RETRIES times, a loop turn apart (other sessions run meanwhile),
  then takes the queue; every LOOP_CHECKPOINT_EVERY-th one takes the queue at once, so
  the batch connection's auto-checkpoint keeps the WAL bounded. A caller cancelled
  between two tries has had nothing committed, and hears no OK. Only a job its caller calls small
  (a STORE of at most LOOP_MAX_MESSAGES messages) runs on the loop: `STORE 1:*` on a
  100,000-message mailbox would hold every other session for the length of its UPDATE.
  A job that raises is rolled back to its savepoint alone; the others still commit. If
  the COMMIT fails, every job of the batch gets the error.
- Batches run under the store's asyncio write lock, the same one every other write takes
  on the aiosqlite writer connection: inside this process writes never contend for
  SQLite's lock (no busy-wait), and UID/MODSEQ allocation stays race-free.
- Across processes (SMTP_PROCESSES, workers.py) batches take an exclusive flock on
  `<database>-batch.lock` around the transaction: the kernel hands the lock to the next
  writer the moment it is released, where SQLite's busy handler would have it sleep and
  retry (1, 2, 5, 10… ms) while the other process commits.
- Change-feed events are published after the COMMIT; blob files the batch's expunges
  released are unlinked after the COMMIT, still under the lock, when no row refers to
  them (a crash in between leaks a file, never loses one still referenced). Released
  small bodies (`blob_data` rows, store/sqliteblobs.py) are deleted inside the
  transaction, before the COMMIT.
- Every caller hears about a failure that touches its job (issue 25): a job whose
  statement failed so badly that SQLite rolled the whole transaction back (a full disk,
  I/O errors, corruption) fails the batch, so the jobs already run in it, rolled back
  too, get that error rather than a result. Errors leave as the storage errors of
  store/errors.py (StorageFull, StorageCorrupt…) where they are one.
- A caller cancelled while its job waits still gets its job committed with the batch
  (a retry then duplicates, never loses); shutdown lets the running batch finish.
- A job may bring file work to do first (`prepare`: a new message's blob, written by
  `FileBlobStore.write_now`): every prepare of the batch runs before BEGIN, then each
  directory they wrote into is fsynced once, so the blob is durable before the row
  that names it commits, in the same thread hop (issue 8: a separate hop per blob cost
  GIL handoffs on every delivery). A job whose prepare failed is not run and gets the
  error.
"""

from __future__ import annotations

import asyncio
import fcntl
import itertools
import logging
import os
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from postroom.store.blobs import FileBlobStore, fsync_dir
from postroom.store.changes import ChangeFeed, WriteEffects
from postroom.store.errors import raise_storage_failure
from postroom.store.sqliteblobs import BLOB_IN_USE_SQL, DELETE_INLINE_IF_UNUSED_SQL, is_inline

log = logging.getLogger("postroom.store")

T = TypeVar("T")

LOOP_CHECKPOINT_EVERY = 64  # flag jobs on the loop between two through the batch thread
LOOP_MAX_MESSAGES = 64  # a flag job for more messages takes the batch thread (module doc)
# A flag job finding the writers busy tries the loop again this many times, this far apart,
# before it takes the queue: a transaction holds the lock for a fraction of a millisecond
# of work, where the queue's thread hop and the durable batch ahead cost several.
LOOP_RETRIES = 3
LOOP_RETRY_SECONDS = 0.0005
_PRAGMAS = (
    "PRAGMA synchronous = FULL",  # acknowledged writes survive power loss
    "PRAGMA foreign_keys = ON",
)


@dataclass(slots=True)
class BatchWork(WriteEffects):
    """One job's connection, and what it changed (published and checked after COMMIT)."""

    db: sqlite3.Connection


Job = Callable[[BatchWork], T]
# File work a job needs done before its transaction; returns a directory to fsync.
Prepare = Callable[[], Path]


@dataclass(slots=True)
class _Pending(Generic[T]):
    job: Job[T]
    done: asyncio.Future[T]
    prepare: Prepare | None = None
    durable: bool = True


@dataclass(slots=True)
class _Outcome:
    result: Any = None
    error: Exception | None = None
    work: BatchWork | None = None


class BatchWriter:
    """Runs write jobs in batches on one connection and one thread (see module doc)."""

    def __init__(self, path: Path, blobs: FileBlobStore, feed: ChangeFeed,
                 write_lock: asyncio.Lock, *, busy_timeout_ms: int) -> None:  # fmt: skip
        self._path = path
        self._blobs = blobs
        self._feed = feed
        self._lock = write_lock
        self._busy_timeout_ms = busy_timeout_ms
        self._thread: ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None
        self._lock_fd: int | None = None  # the cross-process writers' flock (module doc)
        self._waiting: list[_Pending[Any]] = []
        self._task: asyncio.Task[None] | None = None
        self._synchronous = "FULL"  # the batch connection's current PRAGMA synchronous
        self._loop_db: sqlite3.Connection | None = None  # flag jobs on the loop (module doc)
        self._loop_lock_fd: int | None = None  # its own open file: flocks exclude each other
        self._loop_jobs = 0
        self._batching = False  # a batch, not some other write, holds the write lock

    async def open(self) -> None:
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="postroom-sqlite-batch")
        self._db = await self._in_thread(self._connect)
        lock_path = self._path.with_name(self._path.name + "-batch.lock")
        self._lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        self._loop_lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        self._loop_db = sqlite3.connect(self._path, isolation_level=None, timeout=0)
        for pragma in ("PRAGMA busy_timeout = 0", "PRAGMA synchronous = NORMAL",
                       "PRAGMA wal_autocheckpoint = 0", "PRAGMA foreign_keys = ON"):
            self._loop_db.execute(pragma)

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: the batch says BEGIN IMMEDIATE / COMMIT itself.
        db = sqlite3.connect(self._path, isolation_level=None,
                             timeout=self._busy_timeout_ms / 1000)  # fmt: skip
        try:
            for pragma in (f"PRAGMA busy_timeout = {self._busy_timeout_ms}", *_PRAGMAS):
                db.execute(pragma)
        except BaseException:
            db.close()
            raise
        return db

    async def close(self) -> None:
        if self._task is not None:  # jobs already queued still get committed
            await asyncio.shield(self._task)
        thread, db = self._thread, self._db
        self._thread = self._db = None
        if self._loop_db is not None:
            self._loop_db.close()
            self._loop_db = None
        for fd in (self._lock_fd, self._loop_lock_fd):
            if fd is not None:
                os.close(fd)
        self._lock_fd = self._loop_lock_fd = None
        if thread is None:
            return
        try:
            if db is not None:
                await asyncio.get_running_loop().run_in_executor(thread, db.close)
        finally:
            thread.shutdown(wait=False)

    async def run(self, job: Job[T], *, prepare: Prepare | None = None,
                  durable: bool = True, small: bool = False) -> T:
        """Run `job(work)` in the next batch, after `prepare()` (see the module doc); its
        result once that batch is committed (`durable=False`: committed to the WAL
        without an fsync of its own, for flag-only changes: see the module doc)."""
        if self._db is None:
            raise RuntimeError("SqliteStore used before open()")
        if not durable and small and (done := await self._on_loop(job)) is not None:
            if done.error is not None:
                raise_storage_failure(done.error)
                raise done.error
            return done.result  # type: ignore[no-any-return]
        pending: _Pending[T] = _Pending(job, asyncio.get_running_loop().create_future(),
                                        prepare, durable)
        self._waiting.append(pending)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run_batches())
        try:
            # Shielded: see the module doc (a cancelled caller's job still commits).
            return await asyncio.shield(pending.done)
        except (OSError, sqlite3.Error) as error:
            raise_storage_failure(error)
            raise

    async def _run_batches(self) -> None:
        while self._waiting:
            waiting, self._waiting = self._waiting, []
            light = [pending for pending in waiting if not pending.durable]
            durable = [pending for pending in waiting if pending.durable]
            # Flag-only changes first, in their own batch: they need not wait for an fsync.
            if light:
                await self._run_batch(light, later=durable)
            if durable:
                await self._run_batch(durable, later=[])

    async def _run_batch(self, batch: list[_Pending[Any]], later: list[_Pending[Any]]) -> None:
        try:
            async with self._lock:
                self._batching = True
                try:
                    outcomes = await self._in_thread(self._commit_batch, batch)
                finally:
                    self._batching = False
        except Exception as error:  # nothing committed: every caller hears why
            for pending in batch:
                _fail(pending.done, error)
            return
        except BaseException:  # this task was cancelled (shutdown): nobody waits forever
            for pending in batch + later + self._waiting:
                pending.done.cancel()
            raise
        self._announce(batch, outcomes)

    async def _on_loop(self, job: Job[Any]) -> _Outcome | None:
        """A flag job run and committed on the loop, or None: it takes the queue. A job
        that finds the writers busy tries again LOOP_RETRIES times, a loop turn of
        LOOP_RETRY_SECONDS apart (module doc)."""
        self._loop_jobs += 1
        if self._loop_db is None or self._loop_jobs % LOOP_CHECKPOINT_EVERY == 0:
            return None  # no loop connection (closed) or the checkpoint's turn: the queue
        for _ in range(LOOP_RETRIES):
            done = self._run_on_loop(job)
            if done is not None:
                return done
            await asyncio.sleep(LOOP_RETRY_SECONDS)
        return self._run_on_loop(job)

    def _run_on_loop(self, job: Job[Any]) -> _Outcome | None:
        """A flag job run and committed right here, or None when that would wait."""
        db, lock_fd = self._loop_db, self._loop_lock_fd
        if db is None or lock_fd is None or (self._lock.locked() and not self._batching):
            return None
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # a batch, here or in another process, is in its transaction
            return None
        try:
            try:
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as error:
                if error.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                    return None
                raise
            try:
                outcome = self._run_alone(db, job)
                if db.in_transaction:
                    db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except (OSError, sqlite3.Error) as error:
            return _Outcome(error=error)
        finally:
            fcntl.flock(lock_fd, fcntl.LOCK_UN)
        if outcome.error is None:
            self._announce_one(outcome)
        return outcome

    def _announce_one(self, outcome: _Outcome) -> None:
        if outcome.work is not None:
            for change in outcome.work.changes():
                self._feed.publish(change)

    def _announce(self, batch: list[_Pending[Any]], outcomes: list[_Outcome]) -> None:
        for pending, outcome in zip(batch, outcomes, strict=True):
            self._announce_one(outcome)
            if outcome.error is not None:
                _fail(pending.done, outcome.error)
            elif not pending.done.done():
                pending.done.set_result(outcome.result)

    async def _in_thread(self, function: Callable[..., T], *args: Any) -> T:
        if self._thread is None:
            raise RuntimeError("SqliteStore used before open()")
        future = asyncio.get_running_loop().run_in_executor(self._thread, function, *args)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            # The thread goes on with its transaction: let it end before the write lock
            # is given up, or the next writer would find SQLite's lock taken.
            await asyncio.wait([future])
            raise

    # -- on the batch thread ------------------------------------------------------------
    def _commit_batch(self, batch: list[_Pending[Any]]) -> list[_Outcome]:
        assert self._lock_fd is not None  # set by open(), before any job is accepted
        failed = self._prepare(batch)
        runnable = [pending for index, pending in enumerate(batch) if index not in failed]
        outcomes: list[_Outcome] = []
        if runnable:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                outcomes = self._commit_locked(runnable)
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        committed = iter(outcomes)
        return [failed[index] if index in failed else next(committed)
                for index in range(len(batch))]

    @staticmethod
    def _prepare(batch: list[_Pending[Any]]) -> dict[int, _Outcome]:
        """Run the batch's prepares, then fsync their directories once each; the
        outcomes of the jobs that cannot run, by position in the batch."""
        failed: dict[int, _Outcome] = {}
        directories: set[Path] = set()
        for index, pending in enumerate(batch):
            if pending.prepare is not None:
                try:
                    directories.add(pending.prepare())
                except Exception as error:
                    failed[index] = _Outcome(error=error)
        try:
            for directory in directories:
                fsync_dir(directory)
        except OSError as error:  # no prepared file is known to be durable
            for index, pending in enumerate(batch):
                if pending.prepare is not None:
                    failed.setdefault(index, _Outcome(error=error))
        return failed

    def _commit_locked(self, batch: list[_Pending[Any]]) -> list[_Outcome]:
        db = self._db
        assert db is not None  # set by open(), before any job is accepted
        synchronous = "FULL" if any(pending.durable for pending in batch) else "NORMAL"
        if synchronous != self._synchronous:  # no I/O: read at the next COMMIT
            db.execute(f"PRAGMA synchronous = {synchronous}")
            self._synchronous = synchronous
        db.execute("BEGIN IMMEDIATE")
        try:
            if len(batch) == 1:  # alone, its savepoint would be the transaction itself
                outcomes = [self._run_alone(db, batch[0].job)]
            else:
                outcomes = [self._run_job(db, pending.job) for pending in batch]
            released = set().union(*(o.work.blobs for o in outcomes if o.work is not None))
            if db.in_transaction:  # not when the lone job failed and was rolled back
                for blob_id in filter(is_inline, released):  # in the transaction (module doc)
                    db.execute(DELETE_INLINE_IF_UNUSED_SQL, (blob_id,) * 3)
                db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        for blob_id in itertools.filterfalse(is_inline, released):
            self._unlink_if_unused(db, blob_id)
        return outcomes

    @staticmethod
    def _run_alone(db: sqlite3.Connection, job: Job[Any]) -> _Outcome:
        work = BatchWork(db)
        try:
            return _Outcome(result=job(work), work=work)
        except Exception as error:
            if db.in_transaction:  # SQLite may have rolled back already (I/O error, full)
                db.execute("ROLLBACK")
            return _Outcome(error=error)

    @staticmethod
    def _run_job(db: sqlite3.Connection, job: Job[Any]) -> _Outcome:
        work = BatchWork(db)
        db.execute("SAVEPOINT job")
        try:
            result = job(work)
        except Exception as error:
            if not db.in_transaction:
                # SQLite rolled back the whole batch (full, I/O error): the jobs before
                # this one are undone too, so the batch fails and all of them hear why.
                raise
            db.execute("ROLLBACK TO job")
            db.execute("RELEASE job")
            return _Outcome(error=error)
        db.execute("RELEASE job")
        return _Outcome(result=result, work=work)

    def _unlink_if_unused(self, db: sqlite3.Connection, blob_id: str) -> None:
        try:
            (in_use,) = db.execute(BLOB_IN_USE_SQL, (blob_id, blob_id)).fetchone()
            if not in_use:
                self._blobs.path(blob_id).unlink(missing_ok=True)
        except (OSError, sqlite3.Error) as error:  # committed already: a leak, not a loss
            log.warning("blob %s not removed after expunge: %s", blob_id, error)


def _fail(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
