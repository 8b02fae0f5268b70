"""\\Recent for IMAP4rev1 clients (RFC 3501 §2.3.2), tracked in this process.

Owns the claims: per store and mailbox, the highest UID some read-write session has been
told about. The first such session to see a newer message gets it as \\Recent; a
read-only one (EXAMINE) sees the unclaimed ones as \\Recent and claims none.

Invariants: claims, and anything else kept per mailbox in the process, are keyed by
`mailbox_key` (the never-reused `Mailbox.object_id`, migration 0010), never by the row
id, which SQLite hands to the next mailbox created after the newest one was deleted
(issue 17). Weak keys: a closed store takes its claims along; DELETE drops a mailbox's.
"""

from __future__ import annotations

import bisect
import weakref
from collections.abc import Iterable, Sequence

from postroom.store.api import Mailbox, Store

# In process (the brief allows it), so sessions of other processes or nodes claim apart.
_recent_claims: weakref.WeakKeyDictionary[Store, dict[str, int]] = weakref.WeakKeyDictionary()


def mailbox_key(mailbox: Mailbox) -> str:
    """What state kept per mailbox in this process is keyed by: the never-reused
    `object_id` (migration 0010); the row id only for hand-built rows of test doubles."""
    return mailbox.object_id or f"#{mailbox.id}"


def claim_recent(store: Store, mailbox: Mailbox, uids: Sequence[int]) -> set[int]:
    """The UIDs among `uids` (ascending) no session has seen yet; they are now claimed
    by the caller."""
    claims = _recent_claims.setdefault(store, {})
    key = mailbox_key(mailbox)
    fresh = uids[bisect.bisect_right(uids, claims.get(key, 0)) :]
    if fresh:
        claims[key] = fresh[-1]
    return set(fresh)


def unclaimed_recent(store: Store, mailbox: Mailbox, uids: Sequence[int]) -> set[int]:
    """The UIDs among `uids` (ascending) that are \\Recent for whoever looks first, left
    unclaimed: what EXAMINE shows (RFC 3501 §6.3.2: a read-only look claims nothing)."""
    claimed = _recent_claims.get(store, {}).get(mailbox_key(mailbox), 0)
    return set(uids[bisect.bisect_right(uids, claimed) :])


def count_unclaimed(store: Store, mailbox: Mailbox, uids: Iterable[int]) -> int:
    """How many of `uids` would be \\Recent for the next session (STATUS RECENT)."""
    claimed = _recent_claims.get(store, {}).get(mailbox_key(mailbox), 0)
    return sum(1 for uid in uids if uid > claimed)


def forget_mailbox(store: Store, mailbox: Mailbox) -> None:
    """The mailbox was deleted: its claims can go (its key is never seen again)."""
    _recent_claims.get(store, {}).pop(mailbox_key(mailbox), None)
