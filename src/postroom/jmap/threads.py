"""JMAP thread ids (RFC 8621 §3): which Emails make a conversation, decided once per Email.

Owns `assign_threads` (the catch-up every Email/Thread method that shows thread ids runs
first) and `thread_ids`, and the rule that groups Emails:

- An Email joins the thread of an earlier Email when the two share a Message-ID among
  their own Message-ID, In-Reply-To and References: the Email replies to the earlier
  one, the earlier one replies to it (a reply that arrived first), or both reply to a
  message of the thread that is not here. When several threads qualify, the one of the
  nearest parent wins: In-Reply-To first, then References from the newest back, then
  the Email's own Message-ID. Otherwise it starts a thread whose id is "T" + its blob id.
- Unlike IMAP's REFERENCES threading (mail/threading.py), the base subject is NOT
  required to match, and subjects never join messages on their own: RFC 8621 §3 leaves
  the algorithm to the server, and a renamed reply is still a reply while two unrelated
  "Hello" mails are not one conversation.
- Threads never merge and an Email never changes thread (RFC 8621 §4.1.1: threadId is
  immutable): a later Email linking two threads joins one of them.

When: ids are assigned once per message, by the first JMAP request after its delivery
that needs them, in arrival order (the saved date of the Email's first copy), batch by
batch; later requests find nothing to do (store/jmapthreads_api.py's marks). Since each
Email only looks at Emails that arrived before it, the result is the one assignment at
delivery would give, without a cost on the delivery path. A request that finds many new
Emails (the first after an upgrade) pays for reading their headers once.

Invariants: at most MAX_THREAD_MESSAGE_IDS Message-IDs per Email are considered (the
newest References); a message whose blob is gone meanwhile is threaded from the
Message-ID and In-Reply-To its stored envelope kept; one process threads one account at
a time (a per-account lock), and two processes racing produce the same ids or leave the
first one's (the store ignores a second record).
"""

from __future__ import annotations

import asyncio
import re
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, Any

from postroom.mail.headers import find_body_start, first_values
from postroom.mail.searchtext import stored_meta
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
# ENVELOPE positions (RFC 9051 §7.5.2) of In-Reply-To and Message-ID.
_IN_REPLY_TO, _ENVELOPE_MESSAGE_ID = 8, 9

_locks: weakref.WeakKeyDictionary[Store, dict[int, asyncio.Lock]] = (
    weakref.WeakKeyDictionary())


@dataclass(frozen=True, slots=True)
class MessageIds:
    """What threading reads of one message (ids without angle brackets)."""

    own: str | None
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]

    def lookup_order(self) -> list[str]:
        """The ids whose thread the Email joins, nearest parent first (module doc)."""
        ordered = [*self.in_reply_to, *reversed(self.references)]
        if self.own is not None:
            ordered.append(self.own)
        return list(dict.fromkeys(ordered))[:MAX_THREAD_MESSAGE_IDS]


def _ids(value: str | None) -> tuple[str, ...]:
    return tuple(_MESSAGE_ID.findall(value or ""))


def ids_from_header(header: bytes) -> MessageIds:
    fields = first_values(header, ("message-id", "in-reply-to", "references"))
    own = _ids(fields.get("message-id"))
    return MessageIds(own[0] if own else None, _ids(fields.get("in-reply-to")),
                      _ids(fields.get("references"))[-MAX_THREAD_MESSAGE_IDS:])  # fmt: skip


def ids_from_meta(meta_text: str) -> MessageIds:
    """The fallback when the message's bytes are gone: its stored envelope."""
    meta = stored_meta(meta_text)
    envelope: Any = meta.envelope if meta is not None else None
    if not isinstance(envelope, list) or len(envelope) != 10:
        return MessageIds(None, (), ())
    own = _ids(envelope[_ENVELOPE_MESSAGE_ID])
    return MessageIds(own[0] if own else None, _ids(envelope[_IN_REPLY_TO]), ())


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
                   known: dict[str, str]) -> list[ThreadAssignment]:  # fmt: skip
    """The thread of each Email in arrival order; `known` (Message-ID → thread, from the
    store) gains each Email's ids as it is placed, first thread kept. Pure."""
    assigned = []
    for email, message_ids in zip(emails, ids, strict=True):
        order = message_ids.lookup_order()
        thread_id = next((known[one] for one in order if one in known), "T" + email.blob_id)
        for one in order:
            known.setdefault(one, thread_id)
        assigned.append(ThreadAssignment(email.blob_id, thread_id, email.internal_date,
                                         tuple(order)))  # fmt: skip
    return assigned


def _lock(store: Store, account_id: int) -> asyncio.Lock:
    per_store = _locks.setdefault(store, {})
    lock = per_store.get(account_id)
    if lock is None:
        lock = per_store[account_id] = asyncio.Lock()
    return lock


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
            open_blob = await runtime.blobs.opener(email.blob_id for email in emails)
            ids = await asyncio.to_thread(_read_ids, open_blob, emails)
            wanted = sorted({one for found in ids for one in found.lookup_order()})
            known = await store.jmap_threads_for_message_ids(account_id, wanted)
            await store.jmap_record_threads(account_id, choose_threads(emails, ids, known))
            done += len(emails)
    return done


async def thread_ids(runtime: Runtime, account_id: int,
                     blob_ids: Sequence[str]) -> dict[str, str]:  # fmt: skip
    """The thread id of each of those Emails (after the catch-up)."""
    await assign_threads(runtime, account_id)
    return await runtime.store.jmap_thread_ids(account_id, blob_ids)
