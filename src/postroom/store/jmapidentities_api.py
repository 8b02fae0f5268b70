"""The `JmapIdentityStore` role (issue 23): JMAP Identities (RFC 8621 §6) and the records
of EmailSubmissions (§7) of each account, and the counters their /changes read.

Owns the Protocol and its rows; both backends implement it once in
`store/sql/jmapidentities.py` (migration 0030). Which addresses an account may send as
is not the store's business: the JMAP layer decides (SPOOF_PROTECTION's rule) and hands
the list to `jmap_sync_identities`.

Invariants:
- Every change of an account's identities (or submissions) takes the next value of that
  account's counter for the kind, in the transaction that makes it; the row keeps the
  value of its creation and of its last change. A destroyed row stays as a tombstone
  carrying the value of its destruction. So the state of a kind is its counter, and
  /changes since a state is read from the rows alone.
- Tombstones beyond TOMBSTONES_KEPT per account and kind are deleted, oldest first, and
  the counter's `pruned` raised to the newest value deleted: /changes from a state below
  it raises CannotCalculateChanges (so does a state the counter never reached, or one
  that is not a number). More changes than `max_changes` raise TooManyChanges.
- Live submissions beyond SUBMISSIONS_KEPT per account are destroyed, oldest first, when
  one is added (RFC 8621 §7: the server may destroy a submission once it is final).
- A default identity (`is_default`) stands for one address the account may send as:
  `jmap_sync_identities` keeps exactly one live default row per address it is given and
  destroys the others; `jmap_destroy_identity` never destroys one (mayDelete false).
- Ids are never handed out twice (AUTOINCREMENT / IDENTITY): a JMAP id names one record.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

TOMBSTONES_KEPT = 200  # destroyed identities (or submissions) remembered per account
SUBMISSIONS_KEPT = 1000  # EmailSubmission records kept per account


class JmapKind(enum.StrEnum):
    """The kinds of record that have a counter of their own."""

    IDENTITY = "identity"
    SUBMISSION = "submission"


@dataclass(frozen=True, slots=True)
class IdentityFields:
    """What a user may change of an identity. `reply_to` and `bcc` are the JMAP
    EmailAddress[] values as JSON text (None for null), checked by the JMAP layer."""

    name: str = ""
    reply_to: str | None = None
    bcc: str | None = None
    text_signature: str = ""
    html_signature: str = ""


@dataclass(frozen=True, slots=True)
class JmapIdentity:
    id: int
    account_id: int
    email: str  # lower-cased; "*@domain" for a catch-all (RFC 8621 §6)
    is_default: bool
    fields: IdentityFields


@dataclass(frozen=True, slots=True)
class JmapSubmission:
    """One EmailSubmission (RFC 8621 §7); `envelope` is its Envelope as JSON text."""

    id: int  # 0 before it is added
    account_id: int
    identity_id: str
    email_id: str
    thread_id: str
    envelope: str
    send_at: dt.datetime
    undo_status: str


@dataclass(frozen=True, slots=True)
class ObjectChanges:
    """Ids created, updated and destroyed after `old_state` up to `new_state`, each list
    in ascending order. A record created and destroyed in between is in none."""

    old_state: int
    new_state: int
    created: list[int]
    updated: list[int]
    destroyed: list[int]


class JmapIdentityStore(Protocol):
    async def jmap_identities(self, account_id: int) -> tuple[int, list[JmapIdentity]]:
        """The identity state and the live identities, by id. The state is read first:
        a change made meanwhile may show in the list and again in /changes."""
        ...

    async def jmap_sync_identities(self, account_id: int, emails: Sequence[str]) -> None:
        """Make the live default identities exactly one per address of `emails`."""
        ...

    async def jmap_create_identity(self, account_id: int, email: str, fields: IdentityFields,
                                   max_identities: int) -> JmapIdentity | None:  # fmt: skip
        """A new identity (not a default one); None when the account has
        `max_identities` live ones that are not default ones already."""
        ...

    async def jmap_update_identity(self, account_id: int, identity_id: int,
                                   fields: IdentityFields) -> JmapIdentity | None:  # fmt: skip
        """Replace the fields of a live identity; None when there is none of that id."""
        ...

    async def jmap_destroy_identity(self, account_id: int, identity_id: int) -> bool:
        """Destroy a live identity that is not a default one; False when there is none."""
        ...

    async def jmap_object_changes(self, account_id: int, kind: JmapKind, since_state: str,
                                  max_changes: int | None = None) -> ObjectChanges:  # fmt: skip
        """Identity/changes or EmailSubmission/changes (module docstring)."""
        ...

    async def jmap_add_submission(self, submission: JmapSubmission) -> JmapSubmission:
        """Record a submission made; it comes back with its id."""
        ...

    async def jmap_submissions(self, account_id: int) -> tuple[int, list[JmapSubmission]]:
        """The submission state and the live submissions, by id (state read first)."""
        ...

    async def jmap_destroy_submission(self, account_id: int, submission_id: int) -> bool:
        """Forget a submission (the mail it sent is not affected); False when none."""
        ...
