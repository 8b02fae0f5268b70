"""Storage errors every Store backend raises, in the shared error vocabulary.

`AlreadyExists` and `NotFound` are `Refused` (ARCHITECTURE.md rule 4), so a protocol driver
maps them without knowing about the store; `code` is the IMAP response code (RFC 5530) that
fits best. `CannotCalculateChanges` (and `TooManyChanges`, one of them) are `Refused` too:
JMAP /changes cannot answer from that state, and the client resyncs.

`StorageFailure` and its kinds are `TryLater`: the disk or the database failed, not the
request, and the same request may succeed once an operator has acted. Each backend turns
its own errors into them in one place (`storage_failure`): ENOSPC/EDQUOT and SQLite's
"database or disk is full" (PostgreSQL's 53100) are `StorageFull`; a damaged database file
(SQLITE_CORRUPT/NOTADB, PostgreSQL XX001/XX002) is `StorageCorrupt`; other I/O errors are
a plain `StorageFailure`. The drivers map each kind once: SMTP 452 4.3.1 / 451 4.3.0,
IMAP NO [OVERQUOTA] / NO [UNAVAILABLE], POP3 -ERR [SYS/TEMP]. A failure is logged as one
line per kind and minute (`StorageLog`), never a traceback per message: a full disk
refuses every message, and a log that grows per refusal fills it further.

`InstallMismatch` is raised at start-up only: the database and DATA_DIR do not belong
together (store/migrate.py `install_verdict`); `serve` and the admin commands print it as
their one line and exit non-zero.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
import threading
import time

from postroom.errors import Refused, StoreError, TryLater

log = logging.getLogger("postroom.store")


class AlreadyExists(Refused):
    """The account, alias or mailbox being created is already there."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="ALREADYEXISTS")


class NotFound(Refused):
    """The account, mailbox or queue entry named does not exist."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="NONEXISTENT")


class CannotCalculateChanges(Refused):
    """JMAP /changes (store/jmap_api.py): the old state is unknown or pruned, or what
    happened since it cannot be told; the client must resync (RFC 8620 §5.2)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="CANNOTCALCULATECHANGES")


class TooManyChanges(CannotCalculateChanges):
    """JMAP /changes: more changes than the client's maxChanges or MAX_CHANGES allow.
    A CannotCalculateChanges (intermediate states are not served: decision 0057)."""


class StorageFailure(TryLater):
    """The store could not read or write: an I/O error below it, not the request."""

    kind = "I/O error"
    imap_code = "UNAVAILABLE"  # RFC 5530 §3


class StorageFull(StorageFailure):
    """No space left for mail: the disk, a quota on it, or the database's size limit."""

    kind = "storage full"
    imap_code = "OVERQUOTA"  # RFC 5530 §3; the text is Dovecot's

    def __init__(self, message: str = "Not enough disk space") -> None:
        super().__init__(message)


class StorageCorrupt(StorageFailure):
    """The database file is damaged: nothing more may be acknowledged until it is
    repaired (the SMTP drivers refuse new transactions once a store has seen this)."""

    kind = "database damaged"

    def __init__(self, message: str = "mail storage is damaged; try again later") -> None:
        super().__init__(message)


class InstallMismatch(StoreError):
    """At start-up: the database is missing, empty or another install's while DATA_DIR
    holds this install's mail (or the database failed its integrity check)."""


_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_IO_ERRNOS = frozenset({errno.EIO, errno.EROFS})
_SQLITE_FULL = {sqlite3.SQLITE_FULL}
_SQLITE_CORRUPT = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}
_SQLITE_IO = {sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN}
_PG_FULL = {"53100"}  # disk_full
_PG_CORRUPT = {"XX001", "XX002"}  # data_corrupted, index_corrupted


def storage_failure(error: BaseException) -> StorageFailure | None:
    """The StorageFailure `error` is (an OSError, a sqlite3 or psycopg error), logged
    through `STORAGE_LOG`; None for any other error. Already a StorageFailure: itself."""
    if isinstance(error, StorageFailure):
        return error
    failure = _classify(error)
    if failure is not None:
        STORAGE_LOG.note(failure, error)
    return failure


def _classify(error: BaseException) -> StorageFailure | None:
    if isinstance(error, OSError):
        if error.errno in _FULL_ERRNOS:
            return StorageFull()
        if error.errno in _IO_ERRNOS:
            return StorageFailure("storage I/O error; try again later")
        return None
    if isinstance(error, sqlite3.Error):
        code = getattr(error, "sqlite_errorcode", 0) & 0xFF  # the primary code
        if code in _SQLITE_FULL:
            return StorageFull()
        if code in _SQLITE_CORRUPT:
            return StorageCorrupt()
        if code in _SQLITE_IO:
            return StorageFailure("storage I/O error; try again later")
        return None
    sqlstate = getattr(error, "sqlstate", None)  # psycopg, without importing it here
    if sqlstate in _PG_FULL:
        return StorageFull()
    if sqlstate in _PG_CORRUPT:
        return StorageCorrupt()
    return None


def raise_storage_failure(error: BaseException) -> None:
    """Raise the StorageFailure `error` is, from it; return when it is none."""
    failure = storage_failure(error)
    if failure is not None and failure is not error:
        raise failure from error


class StorageLog:
    """One log line per kind of storage failure and `interval` seconds; the ones in
    between are counted and the next line says how many there were."""

    def __init__(self, interval: float = 60.0) -> None:
        self.interval = interval
        self._lock = threading.Lock()  # failures are noted on worker threads too
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def note(self, failure: StorageFailure, cause: BaseException) -> bool:
        """Log `failure` unless its kind was logged within the interval; True if logged."""
        now = time.monotonic()
        with self._lock:
            last = self._last.get(failure.kind)
            if last is not None and now - last < self.interval:
                self._held[failure.kind] = self._held.get(failure.kind, 0) + 1
                return False
            self._last[failure.kind] = now
            held = self._held.pop(failure.kind, 0)
        more = f" ({held} more since the last line)" if held else ""
        log.error("storage: %s: %s%s; refusing with a temporary error until it is fixed",
                  failure.kind, _describe(cause), more)
        return True


def _describe(cause: BaseException) -> str:
    if isinstance(cause, OSError) and cause.strerror:
        where = f" ({cause.filename})" if cause.filename else ""
        return f"{cause.strerror}{where}"
    return str(cause) or type(cause).__name__


STORAGE_LOG = StorageLog()


def storage_damage(store: object) -> StorageCorrupt | None:
    """The StorageCorrupt a store's writes have met, if any (`SqliteStore.damage`,
    `PostgresStore.damage`); the SMTP drivers then refuse new transactions."""
    damage = getattr(store, "damage", None)
    return damage if isinstance(damage, StorageCorrupt) else None
