"""SQLite's read connection on the event loop (store/sqlite.py's `_point_rows`).

Owns that connection's settings and `LongReads`, what it has learnt. The connection is
read-only, never waits for a lock (busy_timeout 0) and gives a statement at most
ON_LOOP_STEPS virtual-machine steps (a progress handler interrupts it), so a read on it
answers at once or fails at once, and the store makes it again on the reader thread.

Point reads take a few hundred steps; an account's mailbox list about 42 per mailbox;
the few messages a FETCH names or the changes a refresh reads, about 60 per row. A
mailbox of 100,000 messages would take more than the budget for STATUS's counts, every
time: `LongReads` remembers each statement (with its parameters) that ran out of steps,
and the store sends it straight to the reader thread from then on, instead of spending
the budget on the loop again.

Invariants:
- At most LONG_READS_KEPT statements are remembered, the least recently used forgotten
  first; a forgotten one is tried on the loop again, which costs one budget at most.
- Remembering only ever moves a read off the loop: the answer is the same either way.
"""

from __future__ import annotations

import sqlite3
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

# On the loop connection: a statement still running after this many SQLite VM steps is
# interrupted and read again on the reader thread. 1,000 mailboxes take 42,000 steps
# (1.4 ms with the rows made), so the default MAX_MAILBOXES_PER_ACCOUNT fits.
ON_LOOP_STEPS = 50_000
# What sends an on-loop read to the reader thread instead of failing it.
OFF_THE_LOOP = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_INTERRUPT)
LONG_READS_KEPT = 1024
# Small bodies (blob_data rows, at most 64 KiB each) read together on the loop: a FETCH of
# a few messages' headers or bodies; more go to the reader thread. 8 copy 512 KiB at most.
INLINE_ON_LOOP = 8


def connect_on_loop(path: Path) -> sqlite3.Connection:
    """The point-read connection: read-only, never waiting for a lock, and giving up a
    statement after ON_LOOP_STEPS virtual-machine steps."""
    db = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        db.execute("PRAGMA busy_timeout = 0")
        db.execute("PRAGMA query_only = ON")
        db.set_progress_handler(too_long, ON_LOOP_STEPS)
    except BaseException:
        db.close()
        raise
    return db


def too_long() -> int:
    """SQLite's progress handler: called once a statement ran ON_LOOP_STEPS steps, it
    interrupts it (SQLITE_INTERRUPT), and the read goes to the reader thread."""
    return 1


class LongReads:
    """The statements that ran out of the loop's step budget (module doc)."""

    __slots__ = ("_kept",)

    def __init__(self) -> None:
        self._kept: OrderedDict[Hashable, None] = OrderedDict()

    def __contains__(self, read: tuple[str, Sequence[Any]]) -> bool:
        key = _key(*read)
        if key is None or key not in self._kept:
            return False
        self._kept.move_to_end(key)
        return True

    def remember(self, sql: str, params: Sequence[Any]) -> None:
        key = _key(sql, params)
        if key is None:
            return
        self._kept[key] = None
        self._kept.move_to_end(key)
        while len(self._kept) > LONG_READS_KEPT:
            self._kept.popitem(last=False)


def _key(sql: str, params: Sequence[Any]) -> Hashable | None:
    key = (sql, *params)
    try:
        hash(key)
    except TypeError:  # a parameter that is a list: not remembered
        return None
    return key
