"""Flag columns of big mailboxes shared between the sessions of one process (issue 22).

Owns a small per-store LRU of `FlagTables` (every message's UID, MODSEQ and flags as
the dicts `SelectedMailbox.load_tables` starts from), keyed by the mailbox's never-reused
identity and the HIGHESTMODSEQ they are valid for. A client that reconnects and syncs
(`UID FETCH 1:* (FLAGS)` after SELECT, a phone polling) gets them without the index scan
of 100,000 rows, as Dovecot answers from its index in memory.

Invariants:
- Columns are stored under the baseline of the view that read them, and they were read
  after that baseline: they never show an older state than their key. A view whose
  baseline equals the key may use them; anything newer in them has a MODSEQ above the
  baseline, which `load_tables` queues as an update, exactly as for a fresh read that
  raced a writer. Every change (APPEND, STORE, EXPUNGE, in any process or node) raises
  HIGHESTMODSEQ, so a changed mailbox is read afresh.
- Only mailboxes of at least MIN_MESSAGES (smaller ones are cheap to read), at most
  SLOTS per store; nobody mutates cached tables (`load_tables` copies the dicts, about
  a millisecond per 100,000 entries, where building them from the columns costs ten).
  Keyed per store object (weakly), so two stores in one process never share.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from postroom.imap.recent import mailbox_key
from postroom.store.api import FlagColumns, Mailbox, Store

MIN_MESSAGES = 10_000
SLOTS = 8


@dataclass(frozen=True, slots=True)
class FlagTables:
    """The columns as a view uses them; shared, so callers copy the dicts they change."""

    uids: list[int]  # ascending
    flags: dict[int, frozenset[str]]
    modseqs: dict[int, int]
    top_modseq: int  # the highest MODSEQ among them (0: none)
    flag_sets: frozenset[frozenset[str]]  # the distinct flag sets

    @classmethod
    def of(cls, columns: FlagColumns) -> FlagTables:
        return cls(columns.uids, dict(zip(columns.uids, columns.flags, strict=True)),
                   dict(zip(columns.uids, columns.modseqs, strict=True)),
                   max(columns.modseqs, default=0), frozenset(columns.flags))  # fmt: skip


_Key = tuple[str, int]
_cache: weakref.WeakKeyDictionary[Store, OrderedDict[_Key, FlagTables]] = (
    weakref.WeakKeyDictionary())


async def flag_tables(store: Store, mailbox: Mailbox, baseline: int,
                      read: Callable[[], Awaitable[FlagColumns]]) -> FlagTables:
    """The tables valid at `baseline`: cached, or from `read()` (and kept when big)."""
    key = (mailbox_key(mailbox), baseline)
    slots = _cache.get(store)
    found = slots.get(key) if slots is not None else None
    if found is not None:
        slots.move_to_end(key)  # type: ignore[union-attr]
        return found
    tables = FlagTables.of(await read())
    if len(tables.uids) >= MIN_MESSAGES:
        slots = _cache.setdefault(store, OrderedDict())
        for old in [k for k in slots if k[0] == key[0]]:  # older states of this mailbox
            del slots[old]
        slots[key] = tables
        while len(slots) > SLOTS:
            slots.popitem(last=False)
    return tables
