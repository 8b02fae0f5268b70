"""The `JmapThreadStore` role (issue 23, RFC 8621 §3): which thread each Email is in.

Owns the Protocol and its rows; both backends implement it once in
`store/sql/jmapthreads.py` (migrations 0029 and 0031). How threads are chosen is not the
store's business: jmap/threads.py decides and records.

Invariants:
- An Email (a message blob of the account, decision 0057) has at most one thread id,
  and once recorded it never changes (RFC 8621 §4.1.1: threadId is immutable); a second
  record for the same Email is ignored.
- A Message-ID belongs to the first thread recorded for it; later records naming it do
  not move it. So does a base-subject digest (the subject of a thread's root, RFC 5256
  §3 step 5): recorded with the Email that started the thread, first thread kept.
- A recorded thread id outlives its Email (Thread/changes must name the thread of a
  destroyed Email); `jmap_thread_emails` lists only Emails that still exist.
- `jmap_unthreaded` finds every Email of the account with a message row and no thread
  id; what it reads is bounded by per-mailbox marks that `jmap_record_threads` raises,
  so once an account is threaded, asking again costs one short range read per mailbox.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

# Message-IDs one Email contributes (its own, In-Reply-To, References): as many as the
# IMAP REFERENCES algorithm looks at (mail/threading.py MAX_REFERENCES).
MAX_THREAD_MESSAGE_IDS = 100
MAX_MESSAGE_ID_LENGTH = 250  # characters; a longer id is not recorded (an index key)
SUBJECT_DIGEST_LENGTH = 64  # a SHA-256 in hex: anything else is not recorded


@dataclass(frozen=True, slots=True)
class UnthreadedEmail:
    """An Email without a thread id: its blob, the stored meta (`NewMessage.meta`, "" when
    none) and internal date of its earliest-arrived row."""

    blob_id: str
    meta: str
    internal_date: dt.datetime


@dataclass(frozen=True, slots=True)
class ThreadAssignment:
    """One Email's thread, and the Message-IDs it brings to that thread (without angle
    brackets; at most MAX_THREAD_MESSAGE_IDS are kept), and for an Email that started
    its thread the digest of its base subject (None otherwise, or when it has none)."""

    blob_id: str
    thread_id: str
    received: dt.datetime  # the Email's receivedAt: Thread/get's order
    message_ids: tuple[str, ...] = ()
    subject_digest: str | None = None  # SUBJECT_DIGEST_LENGTH hex digits


class JmapThreadStore(Protocol):
    async def jmap_unthreaded(self, account_id: int, limit: int) -> list[UnthreadedEmail]:
        """Up to `limit` Emails of the account that have no thread id, in arrival order
        (the saved date of their first row, then mailbox and UID)."""
        ...

    async def jmap_threads_for_message_ids(self, account_id: int, message_ids: Sequence[str]
                                           ) -> dict[str, str]:  # fmt: skip
        """The thread each of those Message-IDs belongs to, for those that have one."""
        ...

    async def jmap_record_threads(self, account_id: int,
                                  rows: Sequence[ThreadAssignment]) -> None:  # fmt: skip
        """Record the threads of Emails (ignoring Emails that have one already), their
        Message-IDs and subject digests (ignoring those that belong to a thread already),
        and raise the mailboxes' marks, in one transaction."""
        ...

    async def jmap_threads_for_subjects(self, account_id: int, digests: Sequence[str]
                                        ) -> dict[str, str]:  # fmt: skip
        """The thread each of those base-subject digests belongs to, for those that have
        one (a few statements whatever the number of digests)."""
        ...

    async def jmap_thread_ids(self, account_id: int, blob_ids: Sequence[str]
                              ) -> dict[str, str]:  # fmt: skip
        """The thread id recorded for each of those Emails, gone ones included."""
        ...

    async def jmap_thread_emails(self, account_id: int, thread_ids: Sequence[str]
                                 ) -> dict[str, list[str]]:  # fmt: skip
        """For each thread id with an Email that still exists: its existing Emails (blob
        ids), oldest receivedAt first (ties by blob id)."""
        ...
