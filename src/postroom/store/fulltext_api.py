"""The `FulltextStore` role: the full-text index SEARCH TEXT/BODY consult (issue 22,
[0051](../../../docs/decisions/0051-fulltext-index.md)).

Owns the Protocol and its rows; both backends implement it once in `store/sql/fulltext.py`
(SQLite FTS5 with the trigram tokenizer, PostgreSQL pg_trgm).

Invariants:
- The index holds, per message, exactly the case-folded texts SEARCH matches
  (`mail/searchtext.py`), so a substring query on it answers as reading the message would.
- Per mailbox, `indexed_uid`: every UID up to it is indexed or listed as skipped (or no
  longer exists). Messages above it, and skipped ones, are searched the old way; an
  upgrade or a stopped indexer therefore costs speed, never answers.
- Expunge removes a message's index row in the expunge's own transaction (a trigger on
  SQLite, a cascading foreign key on PostgreSQL); a row is only written for a message that
  still exists, under the mailbox's lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

MIN_NEEDLE = 3  # characters: shorter strings have no trigram; searched the old way


@dataclass(frozen=True, slots=True)
class FulltextTodo:
    """A message the index does not hold yet."""

    uid: int
    blob_id: str
    meta: str  # the MIME tree stored at delivery ("" when none)


@dataclass(frozen=True, slots=True)
class FulltextBatch:
    """Work for one mailbox: its messages above `indexed_uid`, and the UID the index may
    claim once they are recorded (`upto`: the last one given, or the mailbox's last UID
    when all were given — expunged UIDs in between are then covered too)."""

    mailbox_id: int
    upto: int
    todo: tuple[FulltextTodo, ...]
    last_uid: int = 0  # the mailbox's last UID when read (growing: mail is arriving)


@dataclass(frozen=True, slots=True)
class FulltextDoc:
    """What to record for one message: its texts, or None (skipped: searched the old way)."""

    uid: int
    header: str | None
    body: str | None


@dataclass(frozen=True, slots=True)
class FulltextMatch:
    """The index's answer for one mailbox: UIDs up to `indexed_uid` and not in `skipped`
    match exactly when they are in `uids`; the others must be read."""

    indexed_uid: int
    uids: frozenset[int]
    skipped: frozenset[int]


class FulltextStore(Protocol):
    async def fulltext_pending(self, mailboxes: int, messages: int) -> list[FulltextBatch]:
        """Up to `mailboxes` mailboxes with messages above their indexed UID, up to
        `messages` of each, lowest UIDs first."""
        ...

    async def fulltext_record(self, mailbox_id: int, upto: int,
                              docs: Sequence[FulltextDoc]) -> None:
        """Record `docs` (those whose message still exists) and raise the mailbox's
        indexed UID to `upto`, in one transaction. A mailbox gone meanwhile is no error."""
        ...

    async def fulltext_search(self, mailbox_id: int, folded: str, *,
                              with_header: bool) -> FulltextMatch | None:
        """Messages whose body text (and with `with_header` header text) contains the
        case-folded `folded`; None when the index cannot answer that string (shorter
        than MIN_NEEDLE, or not storable text)."""
        ...
