"""What the Email methods (emails.py, emailset.py, emailquery.py) share: an Email as the
store keeps it, keywords as IMAP flags, states, and the limits IMAP enforces too.

Owns:
- `EmailRecord`: one Email (a message blob, decision 0057) from its rows: mailboxIds is
  the mailboxes holding a row, keywords the flags of its rows (union: IMAP lets copies
  differ; Email/set makes them equal again), size, receivedAt the earliest internal date;
- the keyword mapping (RFC 8621 §4.1.1): \\Seen, \\Flagged, \\Answered and \\Draft are
  $seen, $flagged, $answered and $draft; other keywords are shown lower-cased;
  \\Deleted, \\Recent and other system flags are not shown (nor touched by JMAP);
- `require_room` and `keyword_error`: the storage limits (delivery/local.py: messages per
  mailbox, account size, quota) and keyword limits (MAX_KEYWORD_LENGTH, keyword bytes per
  message, MAX_KEYWORDS_PER_MAILBOX) as SetErrors, checked before a write as IMAP does.
Invariants: nothing here writes; a keyword that passes `is_keyword` is a valid IMAP atom.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from postroom.config import Config
from postroom.delivery.local import Full, Room, room_in
from postroom.jmap.errors import MethodError, MethodErrorType, SetError, SetErrorType, SetFailure
from postroom.store.api import Mailbox, Store
from postroom.store.jmap_api import EmailCopy

# The keyword bytes one message may carry (each keyword's UTF-8 length plus a separator),
# the same bound IMAP STORE/APPEND apply (issue 25).
MAX_KEYWORD_BYTES_PER_MESSAGE = 2048
_SYSTEM = {"\\seen": "$seen", "\\flagged": "$flagged", "\\answered": "$answered",
           "\\draft": "$draft"}  # fmt: skip
_FLAG_OF = {"$seen": "\\Seen", "$flagged": "\\Flagged", "$answered": "\\Answered",
            "$draft": "\\Draft"}  # fmt: skip
# RFC 8621 §4.1.1: %x21-%x7e without ( ) { ] % * " \  (IMAP's atom-specials), 1-255.
_KEYWORD = re.compile(r"[!#$&'+,\-./0-9:;<=>?@A-Z\[^_`a-z|}~]{1,255}")
TOO_MANY_KEYWORDS = "tooManyKeywords"  # RFC 8621 §4.6
BLOB_NOT_FOUND = "blobNotFound"


def is_keyword(text: object) -> bool:
    return isinstance(text, str) and _KEYWORD.fullmatch(text) is not None


def keyword_of_flag(flag: str) -> str | None:
    """The JMAP keyword an IMAP flag shows as; None for flags JMAP does not show."""
    if flag.startswith("\\"):
        return _SYSTEM.get(flag.lower())
    return flag.lower()


def flag_of_keyword(keyword: str) -> str:
    """The IMAP flag a (valid, lower-cased) JMAP keyword is stored as."""
    return _FLAG_OF.get(keyword, keyword)


def keywords_of_flags(flags: Iterable[str]) -> dict[str, bool]:
    shown = (keyword_of_flag(flag) for flag in flags)
    return {keyword: True for keyword in sorted({one for one in shown if one is not None})}


@dataclass(frozen=True, slots=True)
class EmailRecord:
    """One Email of the account: its rows (at least one), in (mailbox id, UID) order."""

    blob_id: str
    copies: tuple[EmailCopy, ...]

    @property
    def mailbox_ids(self) -> frozenset[str]:
        return frozenset(copy.mailbox_object_id for copy in self.copies)

    @property
    def flags(self) -> frozenset[str]:
        return frozenset().union(*(copy.flags for copy in self.copies))

    @property
    def keywords(self) -> dict[str, bool]:
        return keywords_of_flags(self.flags)

    @property
    def size(self) -> int:
        return self.copies[0].size

    @property
    def received(self) -> dt.datetime:
        return min(copy.internal_date for copy in self.copies).astimezone(dt.UTC)


async def load_emails(store: Store, account_id: int,
                      blob_ids: Sequence[str]) -> dict[str, EmailRecord]:  # fmt: skip
    rows = await store.jmap_emails(account_id, blob_ids)
    return {blob_id: EmailRecord(blob_id, tuple(copies)) for blob_id, copies in rows.items()}


async def account_blob_ids(store: Store, account_id: int, limit: int) -> list[str] | None:
    """Every Email id of the account, or None when there are more than `limit`."""
    found: dict[str, None] = {}
    for mailbox in await store.list_mailboxes(account_id):
        for row in await store.list_messages(mailbox.id):
            found[row.blob_id] = None
        if len(found) > limit:
            return None
    return list(found)


async def mailboxes_by_id(store: Store, account_id: int) -> dict[str, Mailbox]:
    """The account's mailboxes by JMAP Mailbox id (object_id)."""
    return {box.object_id: box for box in await store.list_mailboxes(account_id)}


def cannot_calculate(error: Exception) -> MethodError:
    """Store CannotCalculateChanges / TooManyChanges: the client resyncs (RFC 8620 §5.2)."""
    return MethodError(MethodErrorType.CANNOT_CALCULATE_CHANGES, str(error))


async def check_state(store: Store, account_id: int, if_in_state: str | None) -> str:
    """The account's state now; stateMismatch when `if_in_state` is given and differs."""
    state = await store.jmap_state(account_id)
    if if_in_state is not None and if_in_state != state:
        raise MethodError(MethodErrorType.STATE_MISMATCH, "the state is " + state)
    return state


# -- limits as SetErrors ----------------------------------------------------------------------


async def require_room(store: Store, config: Config, mailbox: Mailbox, *, messages: int,
                       size: int, adds_size: bool = True) -> Room:  # fmt: skip
    """The room read (for the quota warning afterwards); SetFailure(overQuota) when adding
    `messages` of `size` bytes to `mailbox` would break a limit."""
    room = await room_in(store, config, mailbox.id)
    full = room.full_for(messages=messages, size=size, adds_to_account=adds_size)
    if full is None:
        return room
    if full is Full.MESSAGES:
        why = f"mailbox {mailbox.name} holds {config.max_messages_per_mailbox} messages at most"
    elif full is Full.QUOTA:
        why = "the account's storage quota is used up"
    else:
        why = "the account's storage limit is reached"
    raise SetFailure(SetError(SetErrorType.OVER_QUOTA, why))


def _keyword_bytes(flags: Iterable[str]) -> int:
    return sum(len(flag.encode()) + 1 for flag in flags if not flag.startswith("\\"))


async def keyword_error(store: Store, config: Config, mailboxes: Iterable[Mailbox],
                        flags: frozenset[str], *, adding: frozenset[str] | None = None,
                        ) -> SetError | None:  # fmt: skip
    """The SetError for a message that would carry `flags` in `mailboxes`, if any;
    `adding` (default: all of `flags`) are those the mailboxes may not use yet."""
    for flag in flags:
        if len(flag.encode()) > config.max_keyword_length:
            return SetError.invalid_properties(
                ["keywords"], f"keywords are at most {config.max_keyword_length} bytes")
    if _keyword_bytes(flags) > MAX_KEYWORD_BYTES_PER_MESSAGE:
        return SetError(TOO_MANY_KEYWORDS, f"more than {MAX_KEYWORD_BYTES_PER_MESSAGE}"
                        " bytes of keywords on one Email")  # fmt: skip
    adding = frozenset(flag for flag in (flags if adding is None else adding)
                       if not flag.startswith("\\"))
    if not adding:
        return None
    for mailbox in mailboxes:
        used = await store.mailbox_keywords(mailbox.id)
        if not adding <= used and len(used | adding) > config.max_keywords_per_mailbox:
            return SetError(TOO_MANY_KEYWORDS, f"mailbox {mailbox.name} would use more than"
                            f" {config.max_keywords_per_mailbox} keywords")  # fmt: skip
    return None


# -- arguments --------------------------------------------------------------------------------


def parse_keywords(value: Any) -> dict[str, bool] | SetError:
    """A keywords map (§4.1.1: keyword → true), lower-cased; an invalidProperties SetError
    when it is not one."""
    if not isinstance(value, dict):
        return SetError.invalid_properties(["keywords"], "keywords must be an object")
    for keyword, flag in value.items():
        if not is_keyword(keyword) or flag is not True:
            return SetError.invalid_properties(
                ["keywords"], f"bad keyword {str(keyword)[:80]!r} (keyword: true expected)")
    return {keyword.lower(): True for keyword in value}


def parse_mailbox_ids(value: Any, boxes: Mapping[str, Mailbox],
                      created_ids: Mapping[str, str]) -> list[Mailbox] | SetError:  # fmt: skip
    """A mailboxIds map (id → true, "#creation-id" keys resolved) as mailboxes."""
    if not isinstance(value, dict) or not value:
        return SetError.invalid_properties(["mailboxIds"], "an Email is in one mailbox at least")
    found: list[Mailbox] = []
    for key, flag in value.items():
        object_id = created_ids.get(key[1:], "") if key.startswith("#") else key
        if flag is not True or object_id not in boxes:
            return SetError.invalid_properties(["mailboxIds"], f"no mailbox {key[:80]!r}")
        found.append(boxes[object_id])
    return list({box.id: box for box in found}.values())
