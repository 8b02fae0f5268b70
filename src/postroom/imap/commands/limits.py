"""What IMAP refuses before it adds keywords or messages (issue 25).

Owns the checks STORE, APPEND, COPY and MOVE make first: a keyword longer than
MAX_KEYWORD_LENGTH bytes, a message carrying more than MAX_KEYWORD_BYTES_PER_MESSAGE of
keywords, a mailbox whose distinct keywords would pass MAX_KEYWORDS_PER_MAILBOX (all
NO [LIMIT], RFC 5530 §3), a mailbox that would pass
MAX_MESSAGES_PER_MAILBOX (NO [LIMIT]) and an account that would pass
POSTFIX_MAILBOX_SIZE_LIMIT or its own quota (NO [OVERQUOTA], RFC 9208 §4.3, issue 17).
The last two decide from the store's trigger-kept counters (`delivery.local.room_in`).

Invariants:
- The keywords a mailbox uses are read from the store (`Store.mailbox_keywords`, one
  index-only scan) only when a command adds a keyword this process has not yet seen
  there; what was read is kept per mailbox (`_seen`, at most `_MAILBOXES_KEPT`), so
  STOREs of keywords already in use, the usual case, cost no query. A read stays exact
  while the mailbox's HIGHESTMODSEQ is the one it was read at, so repeating a refused
  command does not scan again.
- Checks precede the write: sessions racing for the last room may overshoot a limit by
  what they add together, never without bound.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from postroom.config import Config
from postroom.delivery.local import Full, Room, room_in
from postroom.errors import Refused
from postroom.imap.recent import mailbox_key
from postroom.imap.selected import SelectedMailbox
from postroom.store.api import Mailbox, Store

# The keywords one message may carry, in bytes (each keyword's UTF-8 length plus one for
# its separator): without it, the per-mailbox limits still let every message carry 200
# keywords of 250 bytes (50 KB), read whole into each session that selects the mailbox
# (issue 25's 1.2 GB, reached another way). Thunderbird's tags and the RFC 5788 registry
# keywords a client uses together take a few hundred bytes.
MAX_KEYWORD_BYTES_PER_MESSAGE = 2048
_MAILBOXES_KEPT = 4096
_SCANNED_UIDS = 1000  # above this, a COPY's keywords are taken from the whole source


@dataclass(frozen=True, slots=True)
class _Seen:
    keywords: frozenset[str]
    modseq: int  # the HIGHESTMODSEQ `keywords` is exact at; 0: a superset, not exact


_seen: weakref.WeakKeyDictionary[Store, OrderedDict[str, _Seen]] = weakref.WeakKeyDictionary()


def keywords(flags: Iterable[str]) -> frozenset[str]:
    return frozenset(flag for flag in flags if not flag.startswith("\\"))


def check_flag_lengths(config: Config, flags: Iterable[str]) -> None:
    """NO [LIMIT] for a flag longer than MAX_KEYWORD_LENGTH bytes (UTF-8)."""
    limit = config.max_keyword_length
    for flag in flags:
        if len(flag.encode()) > limit:
            raise Refused(f"keyword longer than {limit} bytes", code="LIMIT")


def check_message_keywords(flag_sets: Iterable[frozenset[str]], adding: frozenset[str]) -> None:
    """NO [LIMIT] when a message would carry more than MAX_KEYWORD_BYTES_PER_MESSAGE of
    keywords: any of `flag_sets` (the distinct flags the messages hold now) plus `adding`."""
    if not adding:
        return
    for flags in flag_sets:
        words = keywords(flags | adding)
        if sum(len(word.encode()) + 1 for word in words) > MAX_KEYWORD_BYTES_PER_MESSAGE:
            raise Refused(f"more than {MAX_KEYWORD_BYTES_PER_MESSAGE} bytes of keywords on"
                          " one message", code="LIMIT")  # fmt: skip


async def check_keywords(store: Store, config: Config, mailbox: Mailbox,
                         adding: frozenset[str]) -> None:  # fmt: skip
    """NO [LIMIT] when `adding` would give `mailbox` (read just now, for its
    HIGHESTMODSEQ) more distinct keywords than MAX_KEYWORDS_PER_MAILBOX."""
    if not adding:
        return
    kept = _seen.setdefault(store, OrderedDict())
    seen = kept.get(mailbox_key(mailbox))  # never reused, unlike ids (issue 17)
    if seen is not None and adding <= seen.keywords:
        return
    if seen is None or seen.modseq != mailbox.highest_modseq:
        seen = _Seen(await store.mailbox_keywords(mailbox.id), mailbox.highest_modseq)
    total = seen.keywords | adding
    limit = config.max_keywords_per_mailbox
    if len(total) > limit:
        _keep(kept, mailbox_key(mailbox), seen)
        raise Refused(f"mailbox {mailbox.name} would use more than {limit} keywords",
                      code="LIMIT")  # fmt: skip
    _keep(kept, mailbox_key(mailbox), _Seen(total, 0))  # our write may yet fail: not exact


def _keep(kept: OrderedDict[str, _Seen], key: str, seen: _Seen) -> None:
    kept[key] = seen
    kept.move_to_end(key)
    while len(kept) > _MAILBOXES_KEPT:
        kept.popitem(last=False)


async def check_room(store: Store, config: Config, mailbox: Mailbox, *, messages: int,
                     size: int, adds_size: bool = True) -> Room:  # fmt: skip
    """NO [LIMIT] / NO [OVERQUOTA] when the messages would not fit (module doc); else
    the room read, for the quota warning once they are stored."""
    room = await room_in(store, config, mailbox.id)
    full = room.full_for(messages=messages, size=size, adds_to_account=adds_size)
    if full is Full.MESSAGES:
        raise Refused(f"mailbox {mailbox.name} holds {config.max_messages_per_mailbox}"
                      " messages at most", code=full.imap_code)  # fmt: skip
    if full is Full.ACCOUNT_SIZE:
        raise Refused("account storage limit reached", code=full.imap_code)
    if full is Full.QUOTA:
        raise Refused("Quota exceeded (mailbox for user is full)", code=full.imap_code)
    return room


async def check_copied_keywords(store: Store, config: Config, view: SelectedMailbox,
                                uids: Sequence[int], target: Mailbox) -> None:  # fmt: skip
    """`check_keywords` for COPY/MOVE of the view's `uids` into `target`. Their keywords
    come from the view's tables when loaded, else from their rows; a large set first
    tries the whole source mailbox's keywords (one index-only scan, a superset) and reads
    the rows only if that superset does not fit."""
    if view.has_tables:
        sets = {view.flags[uid] for uid in uids if uid in view.flags}
        await check_keywords(store, config, target, _keywords_of_sets(sets))
        return
    if len(uids) > _SCANNED_UIDS:
        try:
            await check_keywords(store, config, target,
                                 await store.mailbox_keywords(view.mailbox_id))  # fmt: skip
            return
        except Refused:
            pass  # the superset did not fit: the messages' own keywords may
    found: set[frozenset[str]] = set()
    for start in range(0, len(uids), _SCANNED_UIDS):
        rows = await store.get_messages(view.mailbox_id, uids[start : start + _SCANNED_UIDS])
        found.update(row.flags for row in rows)
    await check_keywords(store, config, target, _keywords_of_sets(found))


def _keywords_of_sets(sets: Iterable[frozenset[str]]) -> frozenset[str]:
    return frozenset(flag for flags in sets for flag in flags if not flag.startswith("\\"))
