"""The Store protocol and its roles: the one interface every part above `store/` talks to.

Owns the shape of persistent state — domains, accounts, aliases, mailboxes, messages,
the outbound queue — and nothing about how it is kept. Implementations
(`store/sqlite.py`, `store/postgres.py`) must pass the contract suite in `tests/store/`,
which runs every role against both.

Invariants every implementation keeps:
- Addresses and domains are stored lower-cased (local parts too: postroom treats local
  parts case-insensitively, as Postfix and Dovecot do by default).
- A mailbox's UIDVALIDITY never changes while the mailbox holds messages (only an import
  gives an empty mailbox the UID space it had elsewhere); UIDs within a mailbox are
  strictly ascending and never reused (RFC 9051 §2.3.1.1), even after expunge.
- MODSEQ is per mailbox, strictly increasing; every change to a message (append, flag
  change, expunge) takes a new MODSEQ (RFC 7162 §3.1).
- A message body lives once, as a blob (see `store/blobs.py`); COPY shares it. A blob is
  removed when no message references it any more.
- Every mutating method commits before it returns: when it returns, the change is durable.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from postroom.store.accountstate_api import AccountStateStore
from postroom.store.apitokens_api import ApiTokenStore
from postroom.store.credentials_api import CredentialStore
from postroom.store.dmarcreports_api import DmarcReportStore
from postroom.store.fulltext_api import FulltextStore
from postroom.store.greylist_api import (  # noqa: F401  (rows re-exported)
    GreylistClient,
    GreylistEntry,
    GreylistStore,
    SpamThresholds,
)
from postroom.store.jmap_api import JmapStateStore
from postroom.store.jmapidentities_api import JmapIdentityStore
from postroom.store.jmapthreads_api import JmapThreadStore
from postroom.store.jmapuploads_api import JmapUploadStore
from postroom.store.junk_api import JunkStore
from postroom.store.metadata_api import MetadataStore
from postroom.store.mtasts_api import MtaStsStore
from postroom.store.quota_api import QuotaStore
from postroom.store.sieve_api import SieveStore
from postroom.store.tls_api import TlsStore
from postroom.store.tlsreports_api import TlsReportStore
from postroom.store.web_api import WebStore


class SpecialUse(enum.StrEnum):
    """RFC 6154 special-use attributes postroom creates with each account."""

    SENT = "\\Sent"
    DRAFTS = "\\Drafts"
    TRASH = "\\Trash"
    JUNK = "\\Junk"
    ARCHIVE = "\\Archive"


# The mailboxes every new account gets (docker-mailserver's Dovecot config auto-creates
# and subscribes the same set).
DEFAULT_MAILBOXES: tuple[tuple[str, SpecialUse | None], ...] = (
    ("INBOX", None),
    ("Sent", SpecialUse.SENT),
    ("Drafts", SpecialUse.DRAFTS),
    ("Trash", SpecialUse.TRASH),
    ("Junk", SpecialUse.JUNK),
)


class FlagMode(enum.Enum):
    """How STORE applies flags (RFC 9051 §6.4.6)."""

    REPLACE = "replace"
    ADD = "add"
    REMOVE = "remove"


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    address: str
    password_hash: str


@dataclass(frozen=True, slots=True)
class AccountSummary:
    address: str
    message_count: int
    total_size: int


@dataclass(frozen=True, slots=True)
class Alias:
    source: str  # "user@domain" or "@domain" for a catch-all
    target: str


@dataclass(frozen=True, slots=True)
class Mailbox:
    id: int
    account_id: int
    name: str  # full hierarchical name, "/" separated, UTF-8 ("INBOX" always upper-case)
    uidvalidity: int
    uidnext: int
    highest_modseq: int
    special_use: SpecialUse | None
    is_subscribed: bool
    # Never reused, not even by a mailbox re-created under the same name (migration 0010):
    # what anything kept per mailbox in a process is keyed by, and RFC 8474 MAILBOXID.
    # 'M' + 22 or more of [A-Za-z0-9_-]; "" only in test doubles that build rows by hand.
    object_id: str = ""


@dataclass(frozen=True, slots=True)
class MailboxCounts:
    messages: int
    unseen: int
    size: int


@dataclass(frozen=True, slots=True)
class MailboxUsage:
    """What one mailbox and its whole account hold (issue 25: the limits on messages per
    mailbox and bytes per account). Read from counters the database keeps by trigger
    (migration 0008), so the read costs the same however many messages there are."""

    mailbox_messages: int
    mailbox_size: int
    account_messages: int
    account_size: int


def keywords_of(flag_texts: Iterable[str]) -> frozenset[str]:
    """The keywords among stored flag values (each space-separated, as the backends keep
    them): every flag without a leading backslash (RFC 9051 §2.3.2)."""
    return frozenset(flag for text in flag_texts for flag in text.split()
                     if not flag.startswith("\\"))  # fmt: skip


@dataclass(frozen=True, slots=True)
class MessageRow:
    """One message in one mailbox. `flags` holds system flags (\\Seen …) and keywords."""

    mailbox_id: int
    uid: int
    modseq: int
    blob_id: str
    size: int
    internal_date: dt.datetime  # timezone-aware
    flags: frozenset[str]
    saved_date: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class FlagColumns:
    """Flags and MODSEQ of every message in one mailbox, column by column in UID order.

    What SELECT needs on a 100,000-message mailbox without building a MessageRow per
    message; the other columns come from `get_messages` for the UIDs a command touches.
    Equal flag sets share one frozenset.
    """

    uids: list[int]
    modseqs: list[int]
    flags: list[frozenset[str]]

    @classmethod
    def from_rows(cls, rows: Sequence[tuple[int, int, str]]) -> FlagColumns:
        """(uid, modseq, space-separated flags) rows; C-level loops only (100,000 rows)."""
        if not rows:
            return cls([], [], [])
        return cls.from_lists([row[0] for row in rows], [row[1] for row in rows],
                              [row[2] for row in rows])

    @classmethod
    def from_lists(cls, uids: list[int], modseqs: list[int], texts: list[str]) -> FlagColumns:
        """Columns already split; `texts` are space-separated flags."""
        distinct = {text: frozenset(text.split()) for text in set(texts)}
        return cls(uids, modseqs, list(map(distinct.__getitem__, texts)))


@dataclass(frozen=True, slots=True)
class SelectSummary:
    """What SELECT answers with, read in one statement (one snapshot) however big the
    mailbox: the UIDs in order (they give sequence numbers), each distinct flag set (the
    keywords of the FLAGS response) and the first UID without \\Seen (IMAP4rev1's
    `[UNSEEN n]`, RFC 3501 §6.3.1). Per-message flags and MODSEQs are not read: a session
    loads them (`list_flag_columns`) when a command first needs them.
    """

    uids: list[int]
    flag_sets: list[frozenset[str]]
    first_unseen: int | None

    @classmethod
    def from_texts(cls, uids: list[int], texts: Sequence[str],
                   first_unseen: int | None) -> SelectSummary:
        """`texts`: each distinct space-separated flags value once."""
        return cls(uids, [frozenset(text.split()) for text in texts], first_unseen)


@dataclass(frozen=True, slots=True)
class NewMessage:
    """What delivery or APPEND hands the store once the blob is durable.

    `meta` is the pre-computed ENVELOPE/BODYSTRUCTURE/MIME-offset record (JSON text)
    from `mail/mimetree.py`, stored so FETCH never re-parses.
    """

    blob_id: str
    size: int
    internal_date: dt.datetime
    flags: frozenset[str] = frozenset()
    meta: str = ""


@dataclass(frozen=True, slots=True)
class CopyResult:
    """COPYUID/MOVE data (RFC 4315): source UIDs and the UIDs they got in the target."""

    uidvalidity: int
    source_uids: tuple[int, ...]
    target_uids: tuple[int, ...]


# Expunge records kept per mailbox (migration 0007): a client whose last MODSEQ is older
# than what was pruned gets a VANISHED (EARLIER) naming every UID up to the pruned ones
# that is gone, instead of only those expunged since (RFC 7162 §3.2.5.2, §3.2.6: such a
# list may name UIDs the client never had, which it ignores). Ten thousand per mailbox is
# weeks of heavy use; the table no longer grows with every expunge forever.
EXPUNGES_KEPT = 10_000


def recorded_expunges(rows: Sequence[tuple[int, int, int | None]], modseq: int
                      ) -> tuple[list[int], int]:  # fmt: skip
    """From the rows (pruned_modseq, pruned_uid, uid or None) of one query of a mailbox
    and its records after `modseq`: the recorded UIDs, and the UID up to which gone UIDs
    must be added because records from then were pruned (0: the records answer alone)."""
    if not rows:
        return [], 0
    pruned_modseq, pruned_uid, _ = rows[0]
    uids = [row[2] for row in rows if row[2] is not None]
    return uids, (pruned_uid if modseq < pruned_modseq else 0)


def with_forgotten(uids: list[int], pruned_uid: int, present: Iterable[int]) -> list[int]:
    """`uids` and the UIDs from 1 to `pruned_uid` not among the `present` ones, ascending:
    every one of those was expunged at some time (UIDs are never reused), perhaps after a
    pruned record's MODSEQ."""
    remaining = set(present)
    gone = (uid for uid in range(1, pruned_uid + 1) if uid not in remaining)
    return sorted(set(uids).union(gone))


@dataclass(frozen=True, slots=True)
class Expunged:
    """What `Store.expunge` removed: the UIDs found (ascending) and the MODSEQ the expunge
    committed at (the mailbox's HIGHESTMODSEQ after it; 0 when nothing was found and
    nothing changed). IMAP sessions use `modseq` to follow their own expunge without a
    re-read (imap/selected.py `note_own_expunge`)."""

    uids: list[int]
    modseq: int


@dataclass(frozen=True, slots=True)
class QueueEntry:
    """One outbound recipient: the queue keeps one row per recipient (mox's design)."""

    id: int
    message_id: str  # groups the recipients of one submission
    sender: str  # envelope sender, "" for the null sender
    recipient: str
    domain: str
    blob_id: str
    size: int
    created: dt.datetime
    next_attempt: dt.datetime
    attempts: int
    last_error: str
    envid: str = ""
    notify: str = ""  # RFC 3461 NOTIFY value from RCPT, "" when absent
    # Issue 17 (migration 0016): RFC 3461 ORCPT and RET, BODY (RFC 3030 "BINARYMIME" needs
    # CHUNKING at the next hop), RFC 8689 REQUIRETLS, and whether the delay DSN went out.
    orcpt: str = ""
    ret: str = ""
    body: str = ""
    is_requiretls: bool = False
    is_delay_notified: bool = False


@dataclass(frozen=True, slots=True)
class Ban:
    """A client refused after failed logins (issue 7, security/bans.py). `address` is a
    security/peer.py key: an IPv4 address or an IPv6 /64 network."""

    address: str
    created: dt.datetime
    expires: dt.datetime
    failures: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Change:
    """A change-feed event: something in `mailbox_id` changed (or was created/deleted)."""

    account_id: int
    mailbox_id: int
    kinds: frozenset[str] = field(default_factory=frozenset)  # "append" "flags" "expunge"
    # The mailbox's HIGHESTMODSEQ right after this change, 0 when not known. A subscriber
    # whose view already covers it (imap/selected.py: baseline >= modseq) may skip it.
    modseq: int = 0


# The roles the store plays for its users (issue 16). Each user depends on the narrowest
# role it needs: delivery/recipients.py on Directory, the queue worker on QueueStore,
# security/bans.py on GuardStore, IMAP and POP3 on Mailstore, the importers on Importer.
# One backend object implements them all: `Store` is their union.


class Directory(Protocol):
    """Domains, accounts and aliases: who receives mail and who may log in."""

    async def list_domains(self) -> list[str]: ...
    async def is_local_domain(self, domain: str) -> bool: ...
    async def create_account(self, address: str, password_hash: str) -> Account: ...
    async def get_account(self, address: str) -> Account | None: ...
    async def get_account_by_id(self, account_id: int) -> Account | None: ...
    async def set_password(self, address: str, password_hash: str) -> None: ...
    async def delete_account(self, address: str) -> None: ...
    async def list_accounts(self) -> list[AccountSummary]: ...
    async def count_accounts(self) -> int: ...
    async def add_alias(self, source: str, target: str) -> None: ...
    async def delete_alias(self, source: str, target: str | None = None) -> int: ...
    async def list_aliases(self) -> list[Alias]: ...
    async def alias_targets(self, source: str) -> list[str]: ...



class Mailstore(Protocol):
    """Mailboxes and their messages: what IMAP, POP3 and final delivery read and write."""

    async def list_mailboxes(self, account_id: int) -> list[Mailbox]: ...
    async def get_mailbox(self, account_id: int, name: str) -> Mailbox | None: ...
    async def get_mailbox_by_id(self, mailbox_id: int) -> Mailbox | None: ...
    async def create_mailbox(
        self, account_id: int, name: str, special_use: SpecialUse | None = None
    ) -> Mailbox: ...
    async def delete_mailbox(self, mailbox_id: int) -> None: ...
    async def rename_mailbox(self, mailbox_id: int, new_name: str) -> None: ...
    async def set_subscribed(self, account_id: int, name: str, subscribed: bool) -> None: ...
    async def list_subscriptions(self, account_id: int) -> list[str]: ...
    async def mailbox_counts(self, mailbox_id: int) -> MailboxCounts: ...
    async def mailbox_usage(self, mailbox_id: int) -> MailboxUsage:
        """The mailbox's message count and bytes, and its account's over all its
        mailboxes, in one read of the trigger-kept counters (NotFound: no such mailbox)."""
        ...
    async def mailbox_keywords(self, mailbox_id: int) -> frozenset[str]:
        """The keywords (flags without a leading backslash) set on at least one message of
        the mailbox: what the FLAGS response lists and MAX_KEYWORDS_PER_MAILBOX counts."""
        ...

    # -- messages ---------------------------------------------------------------------
    async def append_message(self, mailbox_id: int, message: NewMessage, *,
                             body: bytes | None = None) -> MessageRow:
        """`body`: the bytes of a blob not written yet, under the id
        `message.blob_id` (from `BlobStore.new_id`); the store makes it durable before
        the row commits, in the same trip to its writer (issue 8)."""
        ...
    async def append_messages(self, mailbox_id: int, messages: Sequence[NewMessage], *,
                              bodies: Sequence[bytes | None] | None = None,
                              ) -> list[MessageRow]:  # fmt: skip
        """RFC 3502 MULTIAPPEND: the messages in order, in one transaction (all or none);
        `bodies` as `append_message`'s `body`, one per message."""
        ...
    async def list_messages(
        self, mailbox_id: int, *, changed_since: int = 0
    ) -> list[MessageRow]: ...
    async def get_message(self, mailbox_id: int, uid: int) -> MessageRow | None: ...
    async def list_flag_columns(self, mailbox_id: int) -> FlagColumns: ...
    async def select_summary(self, mailbox_id: int) -> SelectSummary: ...
    async def get_messages(self, mailbox_id: int, uids: Sequence[int]) -> list[MessageRow]:
        """The rows of those `uids` that exist, in UID order."""
        ...
    async def get_meta(self, mailbox_id: int, uid: int) -> str: ...
    async def get_metas(self, mailbox_id: int, uids: Sequence[int]) -> dict[int, str]:
        """The stored meta (`NewMessage.meta`) of those `uids` that exist, by UID: one
        query for many messages (SEARCH BODY/TEXT finds text parts without parsing)."""
        ...
    async def store_flags(
        self,
        mailbox_id: int,
        uids: Sequence[int],
        flags: frozenset[str],
        mode: FlagMode,
        *,
        unchanged_since: int | None = None,
    ) -> list[MessageRow]: ...
    async def expunge(self, mailbox_id: int, uids: Sequence[int]) -> Expunged: ...
    async def expunged_since(self, mailbox_id: int, modseq: int) -> list[int]:
        """UIDs expunged after `modseq`, ascending; when records from then were pruned
        (EXPUNGES_KEPT), also every earlier UID that is gone (`with_forgotten`)."""
        ...
    async def copy_messages(
        self, source_mailbox_id: int, uids: Sequence[int], target_mailbox_id: int
    ) -> CopyResult: ...
    async def move_messages(
        self, source_mailbox_id: int, uids: Sequence[int], target_mailbox_id: int
    ) -> CopyResult: ...

    # -- blobs -----------------------------------------------------------------------
    async def release_blob_if_unused(self, blob_id: str) -> None: ...


class QueueStore(Protocol):
    """The outbound queue (issue 4), leased to workers on any node (issue 10)."""

    async def enqueue(self, entries: Sequence[QueueEntry]) -> list[QueueEntry]: ...
    async def due_queue_entries(self, now: dt.datetime, limit: int) -> list[QueueEntry]: ...
    async def claim_due_queue_entries(
        self, now: dt.datetime, limit: int, lease: dt.timedelta
    ) -> list[QueueEntry]:
        """Due entries leased to the caller (issue 10: several workers or nodes on one
        store): each one's next attempt moves to `now + lease` and it is marked leased
        until then, so no other worker takes it until `reschedule` (which ends the lease)
        or `finish_queue_entry` settles it, or until the lease runs out because the caller
        died. Entries come back with the `next_attempt` they had."""
        ...

    async def renew_queue_leases(self, entry_ids: Sequence[int], held_until: dt.datetime,
                                 until: dt.datetime) -> list[int]:
        """Extend to `until` the leases of those entries still leased to the caller: the
        ones whose lease ends at `held_until`, as its claim or last renewal set it. An
        entry settled meanwhile, or claimed by another worker once the lease had run out,
        is left alone. The ids renewed."""
        ...

    async def list_queue(self) -> list[QueueEntry]: ...
    async def queue_summary(self) -> tuple[int, dt.datetime | None]:
        """How many entries the queue holds and when the oldest was queued (None when
        empty): one aggregate query, for /metrics (metrics.py)."""
        ...

    async def next_queue_attempt(self) -> dt.datetime | None:
        """The earliest `next_attempt` in the queue (a leased entry's is its lease's end),
        None when the queue is empty: when a worker next has something to claim."""
        ...

    async def reschedule(
        self, entry_id: int, next_attempt: dt.datetime, last_error: str
    ) -> None: ...
    async def finish_queue_entry(self, entry_id: int) -> None: ...
    async def mark_delay_notified(self, entry_ids: Sequence[int]) -> None:
        """Record that the sender was told these entries are delayed (sent once)."""
        ...
    async def flush_queue(self, now: dt.datetime, message_id: str | None = None) -> int:
        """Make every entry (or only `message_id`'s) not under a lease in force at `now`
        due at `now`; returns how many changed. Leased entries are being delivered: making
        them claimable again would send them twice."""
        ...

    async def delete_queue_message(self, message_id: str) -> int: ...

    async def release_blob_if_unused(self, blob_id: str) -> None: ...


class Importer(Protocol):
    """What the importers need beyond Mailstore (issue 9, accounts/dms_import.py)."""

    async def set_mailbox_uids(self, mailbox_id: int, uidvalidity: int, uidnext: int) -> Mailbox:
        """Give a mailbox an imported UID space. Another UIDVALIDITY is taken only while the
        mailbox holds no message (Refused otherwise), and no later mailbox is handed it;
        within one UIDVALIDITY, UIDNEXT only rises (RFC 9051 §2.3.1.1)."""
        ...

    async def import_message(
        self, mailbox_id: int, message: NewMessage, *, source_key: str, uid: int | None = None
    ) -> MessageRow | None:
        """Append `message` once per (mailbox, `source_key`): None when that key was
        imported before, even if its message was expunged since. `uid` is used when it is
        not below UIDNEXT, else the next UID; the key is recorded in the same transaction."""
        ...

    async def imported_keys(self, mailbox_id: int) -> set[str]: ...



class GuardStore(Protocol):
    """Bans (issue 7) and failed logins (issue 10), kept in the store so nodes add up."""

    async def add_ban(self, ban: Ban) -> None:
        """Ban `ban.address`, replacing any ban it has; expired bans are purged."""
        ...

    async def get_ban(self, address: str, now: dt.datetime) -> Ban | None:
        """The ban on `address` still in force at `now`, if any."""
        ...

    async def list_bans(self, now: dt.datetime) -> list[Ban]:
        """Bans in force at `now`, the soonest to expire first."""
        ...

    async def delete_ban(self, address: str) -> int: ...

    # -- failed logins (issue 10: counted in the store, so nodes add up) --------------
    async def record_auth_failure(self, address: str, at: dt.datetime,
                                  since: dt.datetime) -> int:
        """Record a failed login by `address` at `at`; returns its failures at or after
        `since`, this one included. Failures before `since` (any address) are pruned.
        Concurrent calls for one address, from any node, each see the others' failures."""
        ...

    async def count_auth_failures(self, address: str, since: dt.datetime) -> int: ...
    async def clear_auth_failures(self, address: str) -> int: ...


class Store(Directory, Mailstore, QueueStore, Importer, GuardStore, MetadataStore,
            QuotaStore, GreylistStore, JunkStore, SieveStore, TlsStore, MtaStsStore,
            TlsReportStore, DmarcReportStore, FulltextStore, AccountStateStore, WebStore,
            CredentialStore, JmapStateStore, JmapUploadStore, ApiTokenStore, JmapThreadStore,
            JmapIdentityStore, Protocol):
    """Persistent state: every role, on one backend. All methods are coroutines and safe
    to call concurrently."""

    async def open(self) -> None: ...
    async def close(self) -> None: ...
