"""Refresh reads shared by the sessions that have one mailbox selected (issue 22).

Owns `changes_since`: the messages changed and the UIDs expunged in a mailbox since a
session's baseline, as `SelectedMailbox.refresh` needs them. One delivery wakes every
session in IDLE on that mailbox at once (10,000 IDLE connections on 10 accounts in the
bench), and they all ask the same question; the first asker's two reads answer them all,
instead of two reads on the store's reader thread per session. And `current_mailbox`:
the mailbox row such a refresh starts from, read once for all of them.

Invariants of `current_mailbox`:
- A refresh that follows a change event (a session goes stale only when its feed
  publishes one, or after its own write, which publishes before it returns) needs a row
  read after that event was published. A row read when the feed had published N changes
  serves every asker while the count is still N: it was read after all of them. The
  first change published after it ends its use.
- It may miss a commit whose event has not reached this process yet, as any session that
  was not woken misses it; that commit's event marks the sessions stale again.
- The rows kept belong to one count; at most KEPT_MAILBOXES of them.

Invariants of `changes_since`:
- A key is the mailbox's never-reused identity, the asker's baseline and the mailbox's
  HIGHESTMODSEQ `top` that the asker has just read. Every read for a key starts after a
  session saw `top` committed, so it holds every change up to `top`: all that the asker
  needs, as `top` becomes its new baseline. Anything newer that the answer also holds
  is announced again at the next refresh and de-duplicated there, as with a private read.
- So an answer stays right for its key for ever. In-flight reads are shared whatever
  their size; finished answers are kept only when small (KEPT_ROWS) and at most
  KEPT_ANSWERS per store, for sessions that wake a moment after the read ended.
- The read runs in a task of its own, and each asker waits on a future of its own that
  the task's end settles: an asker cancelled meanwhile (shutdown, a closed connection)
  cancels only its future and takes nobody else's answer with it. (`asyncio.shield`
  would do the same with two closures and two callbacks per asker: a third of the CPU of
  waking 1,000 sessions of one mailbox.) A failed read is not kept; everyone waiting on
  it sees its error and the next asker reads again.
- Nobody mutates an answer (the lists and frozen rows are shared).
"""

from __future__ import annotations

import asyncio
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field

from postroom.imap.recent import mailbox_key
from postroom.store.api import Mailbox, MessageRow, Store
from postroom.store.changes import ChangeFeed

KEPT_ROWS = 256
KEPT_ANSWERS = 64
KEPT_MAILBOXES = 4096


@dataclass(frozen=True, slots=True)
class Changes:
    changed: list[MessageRow]  # ascending UID; shared, never mutated
    expunged: list[int]


_Key = tuple[str, int, int]


@dataclass(slots=True)
class _Shared:
    running: dict[_Key, asyncio.Task[Changes]] = field(default_factory=dict)
    waiting: dict[_Key, list[asyncio.Future[Changes]]] = field(default_factory=dict)
    kept: OrderedDict[_Key, Changes] = field(default_factory=OrderedDict)
    rows: dict[int, Mailbox | None] = field(default_factory=dict)  # by mailbox id
    rows_published: int = -1  # the feed's count when `rows` were read


_per_store: weakref.WeakKeyDictionary[Store, _Shared] = weakref.WeakKeyDictionary()


async def current_mailbox(store: Store, feed: ChangeFeed, mailbox_id: int) -> Mailbox | None:
    """The mailbox row as read since the feed's last change (module doc); None: gone."""
    shared = _per_store.setdefault(store, _Shared())
    published = feed.published
    if shared.rows_published != published:
        shared.rows.clear()
        shared.rows_published = published
    elif mailbox_id in shared.rows:
        return shared.rows[mailbox_id]
    mailbox = await store.get_mailbox_by_id(mailbox_id)
    # Kept only if no change came while reading (the read may have waited off the loop).
    if shared.rows_published == published == feed.published and (
            len(shared.rows) < KEPT_MAILBOXES):
        shared.rows[mailbox_id] = mailbox
    return mailbox


async def changes_since(store: Store, mailbox: Mailbox, baseline: int) -> Changes:
    """What changed in `mailbox` (as just read) since `baseline`."""
    shared = _per_store.setdefault(store, _Shared())
    key = (mailbox_key(mailbox), baseline, mailbox.highest_modseq)
    answer = shared.kept.get(key)
    if answer is not None:
        shared.kept.move_to_end(key)
        return answer
    waiters = shared.waiting.get(key)
    if waiters is None:
        waiters = shared.waiting[key] = []
        task = asyncio.ensure_future(_read(store, mailbox.id, baseline))
        shared.running[key] = task
        task.add_done_callback(lambda done: _settle(shared, key, done))
    waiter: asyncio.Future[Changes] = asyncio.get_running_loop().create_future()
    waiters.append(waiter)
    return await waiter


async def _read(store: Store, mailbox_id: int, baseline: int) -> Changes:
    changed = await store.list_messages(mailbox_id, changed_since=baseline)
    expunged = await store.expunged_since(mailbox_id, baseline)
    return Changes(changed, expunged)


def _settle(shared: _Shared, key: _Key, task: asyncio.Task[Changes]) -> None:
    shared.running.pop(key, None)
    waiters = shared.waiting.pop(key, [])
    if task.cancelled() or task.exception() is not None:
        for waiter in waiters:  # the next asker reads again
            if waiter.done():
                continue
            if task.cancelled():
                waiter.cancel()
            else:
                waiter.set_exception(task.exception())  # type: ignore[arg-type]
        return
    answer = task.result()
    for waiter in waiters:
        if not waiter.done():  # a cancelled asker's is
            waiter.set_result(answer)
    if len(answer.changed) + len(answer.expunged) <= KEPT_ROWS:
        shared.kept[key] = answer
        while len(shared.kept) > KEPT_ANSWERS:
            shared.kept.popitem(last=False)
