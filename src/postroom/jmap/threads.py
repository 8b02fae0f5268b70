"""JMAP thread ids (RFC 8621 §3): which Emails make a conversation, decided once per Email.

Owns `assign_threads` (run in the background as mail arrives, jmap/threadkeeper.py, and
as a catch-up by every Email/Thread method that shows thread ids) and `thread_ids`, and
the rule that groups Emails, RFC 5256 §3 REFERENCES (IMAP THREAD, mail/threading.py)
made incremental:

- Links (steps 1-2): an Email joins the thread of an earlier Email when the two share a
  Message-ID among their own Message-ID, In-Reply-To and References: the Email replies
  to the earlier one, the earlier one replies to it (a reply that arrived first), or both
  reply to a message of the thread that is not here. When several threads qualify, the
  one of the nearest parent wins: In-Reply-To first, then References from the newest
  back, then the Email's own Message-ID.
- Subjects (step 5, "gather together messages under the root that have the same
  subject"): an Email that no Message-ID links is a root; it joins the thread whose root
  has the same non-empty base subject (RFC 5256 §2.1, mail/basesubject.py, after RFC
  2047 decoding; compared with i;ascii-casemap as SORT does), so "Hello" and a
  "Re: Hello" sent without references are one thread, "Hello" and "Hello world" two.
  Otherwise it starts a thread whose id is "T" + its blob id, and its base subject
  becomes that thread's. As in step 5 only roots are gathered: an Email linked by a
  Message-ID stays in that thread whatever its subject, and its subject names no thread.
- An Email gathered by subject brings its Message-IDs to that thread like any other, so
  later replies to it find the thread by their references.
- Thread ids never change once assigned (RFC 8621 §4.1.1: threadId is immutable, and
  clients cache them): threads never merge and an Email never changes thread, so a later
  Email linking two threads joins one of them, and a root arriving late does not pull
  earlier Emails into its thread. Since each Email only looks at Emails that arrived
  before it, the result does not depend on when the assignment runs.

When: the thread keeper assigns ids shortly after delivery, outside the SMTP
transaction; a JMAP request first assigns what is still missing (the keeper lagging, a
process without one, an upgrade's backlog), in arrival order (the saved date of the
Email's first copy), batch by batch; later runs find nothing to do
(store/jmapthreads_api.py's marks). A run that finds many new Emails pays for reading
their headers once.

Invariants: at most MAX_THREAD_MESSAGE_IDS Message-IDs per Email are considered (the
newest References); a message whose blob is gone meanwhile is threaded from the
Message-ID, In-Reply-To and Subject its stored envelope kept; one process threads one
account at a time (a per-account lock), and two processes racing produce the same ids or
leave the first one's (the store ignores a second record).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, Any

from postroom.mail.basesubject import base_subject
from postroom.mail.headers import decode_words, find_body_start, first_values
from postroom.mail.searchtext import stored_meta
from postroom.mail.sortkeys import casemap
from postroom.runtime import Runtime
from postroom.store.api import Store
from postroom.store.jmapthreads_api import (
    MAX_THREAD_MESSAGE_IDS,
    ThreadAssignment,
    UnthreadedEmail,
)

BATCH = 2000  # Emails threaded per store round trip (the first request after an upgrade)
HEAD_READ = 64 * 1024  # bytes of a message read for its Message-ID fields
_MESSAGE_ID = re.compile(r"<([^<>\s]{1,998})>")
# ENVELOPE positions (RFC 9051 §7.5.2) of Subject, In-Reply-To and Message-ID.
_SUBJECT, _IN_REPLY_TO, _ENVELOPE_MESSAGE_ID = 1, 8, 9

_locks: weakref.WeakKeyDictionary[Store, dict[int, asyncio.Lock]] = (
    weakref.WeakKeyDictionary())


@dataclass(frozen=True, slots=True)
class MessageIds:
    """What threading reads of one message: ids without angle brackets, and the base
    subject (RFC 5256 §2.1, decoded; "" when none)."""

    own: str | None
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    subject: str = ""

    def lookup_order(self) -> list[str]:
        """The ids whose thread the Email joins, nearest parent first (module doc)."""
        ordered = [*self.in_reply_to, *reversed(self.references)]
        if self.own is not None:
            ordered.append(self.own)
        return list(dict.fromkeys(ordered))[:MAX_THREAD_MESSAGE_IDS]

    def subject_digest(self) -> str | None:
        """The key of the base subject in the store (SHA-256 of its i;ascii-casemap form:
        fixed width whatever the subject's length); None for an empty one (step 5.B)."""
        return hashlib.sha256(casemap(self.subject)).hexdigest() if self.subject else None


def _ids(value: str | None) -> tuple[str, ...]:
    return tuple(_MESSAGE_ID.findall(value or ""))


def _base(subject: str | None) -> str:
    return base_subject(decode_words(subject)) if subject else ""


def ids_from_header(header: bytes) -> MessageIds:
    fields = first_values(header, ("message-id", "in-reply-to", "references", "subject"))
    own = _ids(fields.get("message-id"))
    return MessageIds(own[0] if own else None, _ids(fields.get("in-reply-to")),
                      _ids(fields.get("references"))[-MAX_THREAD_MESSAGE_IDS:],
                      _base(fields.get("subject")))  # fmt: skip


def ids_from_meta(meta_text: str) -> MessageIds:
    """The fallback when the message's bytes are gone: its stored envelope."""
    meta = stored_meta(meta_text)
    envelope: Any = meta.envelope if meta is not None else None
    if not isinstance(envelope, list) or len(envelope) != 10:
        return MessageIds(None, (), ())
    own = _ids(envelope[_ENVELOPE_MESSAGE_ID])
    subject = envelope[_SUBJECT] if isinstance(envelope[_SUBJECT], str) else None
    return MessageIds(own[0] if own else None, _ids(envelope[_IN_REPLY_TO]), (),
                      _base(subject))  # fmt: skip


def _read_ids(open_blob: Callable[[str], IO[bytes]],
              emails: Sequence[UnthreadedEmail]) -> list[MessageIds]:  # fmt: skip
    """Off the event loop: each message's head, its ids."""
    found = []
    for email in emails:
        try:
            with open_blob(email.blob_id) as handle:
                head = handle.read(HEAD_READ)
        except FileNotFoundError:  # expunged and released meanwhile
            found.append(ids_from_meta(email.meta))
            continue
        found.append(ids_from_header(head[:find_body_start(head)]))
    return found


def choose_threads(emails: Sequence[UnthreadedEmail], ids: Sequence[MessageIds],
                   known: dict[str, str], subjects: dict[str, str]
                   ) -> list[ThreadAssignment]:  # fmt: skip
    """The thread of each Email in arrival order. `known` (Message-ID → thread) and
    `subjects` (base-subject digest → thread of the root that has it), both from the
    store, gain each Email's ids, and the subject of each Email that starts a thread,
    as it is placed; first thread kept. Pure."""
    assigned = []
    for email, message_ids in zip(emails, ids, strict=True):
        order = message_ids.lookup_order()
        thread_id, root_digest = _thread_of(email, message_ids, order, known, subjects)
        for one in order:
            known.setdefault(one, thread_id)
        assigned.append(ThreadAssignment(email.blob_id, thread_id, email.internal_date,
                                         tuple(order), root_digest))  # fmt: skip
    return assigned


def _thread_of(email: UnthreadedEmail, message_ids: MessageIds, order: list[str],
               known: dict[str, str], subjects: dict[str, str]
               ) -> tuple[str, str | None]:  # fmt: skip
    """The Email's thread, and its subject digest when it starts that thread."""
    linked = next((known[one] for one in order if one in known), None)
    if linked is not None:  # RFC 5256 §3 steps 1-2: a Message-ID links it
        return linked, None
    digest = message_ids.subject_digest()
    if digest is None:
        return "T" + email.blob_id, None
    if digest in subjects:  # step 5: a root with the same base subject
        return subjects[digest], None
    subjects[digest] = "T" + email.blob_id
    return subjects[digest], digest


def _lock(store: Store, account_id: int) -> asyncio.Lock:
    per_store = _locks.setdefault(store, {})
    lock = per_store.get(account_id)
    if lock is None:
        lock = per_store[account_id] = asyncio.Lock()
    return lock


async def _place(runtime: Runtime, account_id: int,
                 emails: Sequence[UnthreadedEmail]) -> list[ThreadAssignment]:  # fmt: skip
    """One batch's threads: its headers read off the loop, then two batched lookups."""
    store = runtime.store
    open_blob = await runtime.blobs.opener(email.blob_id for email in emails)
    ids = await asyncio.to_thread(_read_ids, open_blob, emails)
    wanted = sorted({one for found in ids for one in found.lookup_order()})
    known = await store.jmap_threads_for_message_ids(account_id, wanted)
    digests = sorted({digest for found in ids
                      if (digest := found.subject_digest()) is not None})  # fmt: skip
    subjects = await store.jmap_threads_for_subjects(account_id, digests)
    return choose_threads(emails, ids, known, subjects)


async def assign_threads(runtime: Runtime, account_id: int) -> int:
    """Give every Email of the account that has none its thread id; how many were given."""
    store = runtime.store
    done = 0
    last: list[str] = []
    async with _lock(store, account_id):
        while emails := await store.jmap_unthreaded(account_id, BATCH):
            if [email.blob_id for email in emails] == last:  # a record that did not hold
                raise RuntimeError(f"threading account {account_id} makes no progress")
            last = [email.blob_id for email in emails]
            await store.jmap_record_threads(account_id,
                                            await _place(runtime, account_id, emails))
            done += len(emails)
    return done


async def thread_ids(runtime: Runtime, account_id: int,
                     blob_ids: Sequence[str]) -> dict[str, str]:  # fmt: skip
    """The thread id of each of those Emails (after the catch-up)."""
    await assign_threads(runtime, account_id)
    return await runtime.store.jmap_thread_ids(account_id, blob_ids)
