"""The `JmapStateStore` role: JMAP state strings and /changes (issue 23, RFC 8620 §1.6.2,
§5.2; RFC 8621 §2.2, §4.3) over the same mailboxes and messages IMAP uses.

Owns the Protocol and its rows; both backends implement it once in
`store/sql/jmapstate.py` (docs/decisions/0057-jmap-state.md).

Invariants: a state string names a server-side snapshot of one account's mailbox vector
(per mailbox: identity, UIDVALIDITY, HIGHESTMODSEQ, UIDNEXT, name, special use,
subscription, message count); equal vectors give the same string, and a string is never
handed out for another snapshot. An Email's id is its message's blob id (IMAP's EMAILID is
"E" + that id): every copy of a message shares it and MOVE keeps it; a Mailbox's id is its
never-reused `object_id`. /changes raises `CannotCalculateChanges` (store/errors.py) when
the old state is unknown or pruned, or when what happened since cannot be told (a deleted
mailbox that held messages, pruned expunge records), and `TooManyChanges` past the
caller's `max_changes` or MAX_CHANGES: the client then resyncs (RFC 8620 §5.2).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class EmailChanges:
    """Email/changes: Email ids (blob ids) created, updated and destroyed since
    `old_state`, sorted. An Email created and destroyed in between is in none."""

    old_state: str
    new_state: str
    created: list[str]
    updated: list[str]
    destroyed: list[str]


@dataclass(frozen=True, slots=True)
class MailboxChanges:
    """Mailbox/changes: Mailbox ids (object ids) since `old_state`, sorted.
    `updated_counts_only`: some mailbox was updated and, for each, only its messages
    changed (RFC 8621 §2.2 updatedProperties: the four counts), not its name, parent,
    role or subscription."""

    old_state: str
    new_state: str
    created: list[str]
    updated: list[str]
    destroyed: list[str]
    updated_counts_only: bool


@dataclass(frozen=True, slots=True)
class EmailCopy:
    """One message row of an Email: the fields of `MessageRow` (same names, same order)
    plus the mailbox's `object_id`, which is the JMAP Mailbox id (mailboxIds)."""

    mailbox_id: int
    uid: int
    modseq: int
    blob_id: str
    size: int
    internal_date: dt.datetime
    flags: frozenset[str]
    saved_date: dt.datetime
    mailbox_object_id: str


class JmapStateStore(Protocol):
    """What the JMAP layer asks of the store for states, /changes and Email/get."""

    async def jmap_state(self, account_id: int) -> str:
        """The account's current state string (one read; a snapshot row is added only
        when the account changed since the newest one). NotFound: no such account."""
        ...

    async def jmap_email_changes(self, account_id: int, since_state: str,
                                 max_changes: int | None = None) -> EmailChanges:  # fmt: skip
        """Emails changed since `since_state`; `new_state` is taken before the changes are
        read, so a change made meanwhile may also be listed (and is again next time)."""
        ...

    async def jmap_mailbox_changes(self, account_id: int, since_state: str,
                                   max_changes: int | None = None) -> MailboxChanges:  # fmt: skip
        """Mailboxes created, updated or destroyed since `since_state`."""
        ...

    async def jmap_emails(self, account_id: int, blob_ids: Sequence[str]
                          ) -> dict[str, list[EmailCopy]]:  # fmt: skip
        """Every row of each Email (blob id) in the account, by blob id, in (mailbox id,
        UID) order; ids with no row are absent."""
        ...
