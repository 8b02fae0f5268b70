"""Row mappers, value conversions and the statements several concerns share.

Rows are plain tuples in the column order of the statements below. Flags are stored as
the sorted, space-separated atoms (RFC 9051 §9 flag-keyword: never a space); internal
dates as ISO 8601 text keeping their offset; other times as the dialect keeps them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from postroom.store.api import (
    Ban,
    FlagMode,
    Mailbox,
    MessageRow,
    NewMessage,
    QueueEntry,
    SpecialUse,
)
from postroom.store.sql.dialect import Dialect, aware

INBOX = "INBOX"
SEPARATOR = "/"
ROWS_BUILT_ON_LOOP = 2_000  # ~2.5 µs a row: more are built in a thread, off the loop

Row = Any  # a tuple from the driver
ReadTime = Callable[[Any], dt.datetime]

SELECT_MESSAGES = (
    "SELECT mailbox_id, uid, modseq, blob_id, size, internal_date, flags, saved_date"
    " FROM messages WHERE mailbox_id = ?"
)
INSERT_MESSAGE = (
    "INSERT INTO messages (mailbox_id, uid, modseq, blob_id, size, internal_date, flags,"
    " saved_date, meta) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# One UPDATE takes the UID and the MODSEQ (RFC 7162 §3.1: every append its own); on
# PostgreSQL it also locks the mailbox row, so appends from any node queue there.
TAKE_UID = (
    "UPDATE mailboxes SET uidnext = uidnext + 1, highest_modseq = highest_modseq + 1"
    " WHERE id = ? RETURNING account_id, uidnext - 1, highest_modseq"
)
UPDATE_FLAGS = "UPDATE messages SET flags = ?, modseq = ? WHERE mailbox_id = ? AND uid = ?"
MAILBOX_SELECT = (
    "SELECT b.id, b.account_id, b.name, b.uidvalidity, b.uidnext, b.highest_modseq,"
    " b.special_use, EXISTS (SELECT 1 FROM subscriptions s"
    " WHERE s.account_id = b.account_id AND s.name = b.name), b.object_id FROM mailboxes b"
)
SELECT_QUEUE = (
    "SELECT id, message_id, sender, recipient, domain, blob_id, size, created, next_attempt,"
    " attempts, last_error, envid, notify, orcpt, ret, body, requiretls, delay_notified"
    " FROM queue"
)
SELECT_BANS = "SELECT address, created, expires, failures, reason FROM bans"
# What the install check (store/migrate.py) asks: is there mail a blank database would hide?
HAS_MAIL = ("SELECT EXISTS (SELECT 1 FROM accounts) OR EXISTS (SELECT 1 FROM messages)"
            " OR EXISTS (SELECT 1 FROM queue)")
INSTALL_ID = "SELECT id FROM install WHERE singleton = 1"


async def read_install_state(fetch_one: Callable[[str], Awaitable[Row]]) -> tuple[str | None, bool]:
    """`migrate.InstallTarget.install_state` over a backend's one-row read."""
    row = await fetch_one(INSTALL_ID)
    (has_mail,) = await fetch_one(HAS_MAIL)
    return (row[0] if row else None), bool(has_mail)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def flags_text(flags: Iterable[str]) -> str:
    # Flags are IMAP atoms (RFC 9051 §9 flag-keyword), so they never contain a space.
    return " ".join(sorted(flags))


def normalise_mailbox_name(name: str) -> str:
    # RFC 9051 §5.1: "INBOX" is case-insensitive; every other name is case-sensitive.
    return INBOX if name.upper() == INBOX else name


def domain_of(address: str) -> str:
    return address.rpartition("@")[2]


def apply_flags(current: frozenset[str], flags: frozenset[str], mode: FlagMode) -> frozenset[str]:
    # RFC 9051 §6.4.6: FLAGS replaces, +FLAGS adds, -FLAGS removes.
    if mode is FlagMode.REPLACE:
        return flags
    if mode is FlagMode.ADD:
        return current | flags
    return current - flags


def message_from_row(row: Row, flag_cache: dict[str, frozenset[str]],
                     read_time: ReadTime) -> MessageRow:  # fmt: skip
    flags = flag_cache.get(row[6])
    if flags is None:
        flags = flag_cache[row[6]] = frozenset(row[6].split())
    return MessageRow(row[0], row[1], row[2], row[3], row[4],
                      dt.datetime.fromisoformat(row[5]), flags, read_time(row[7]))  # fmt: skip


def messages_from_rows(rows: list[Row], read_time: ReadTime) -> list[MessageRow]:
    flag_cache: dict[str, frozenset[str]] = {}  # few distinct flag sets: share the frozensets
    return [message_from_row(row, flag_cache, read_time) for row in rows]


def flag_updates(rows: list[Row], flags: frozenset[str], mode: FlagMode,
                 unchanged_since: int | None, read_time: ReadTime,
                 ) -> list[tuple[MessageRow, frozenset[str]]]:  # fmt: skip
    """STORE's changes: each message whose flags `mode` changes, with its new flags."""
    flag_cache: dict[str, frozenset[str]] = {}
    updates = []
    for message in (message_from_row(row, flag_cache, read_time) for row in rows):
        new_flags = apply_flags(message.flags, flags, mode)
        # RFC 7162 §3.1.3: UNCHANGEDSINCE leaves messages modified after it alone.
        is_stale = unchanged_since is not None and message.modseq > unchanged_since
        if new_flags != message.flags and not is_stale:
            updates.append((message, new_flags))
    return updates


def mailbox_from_row(row: Row) -> Mailbox:
    special_use = SpecialUse(row[6]) if row[6] else None
    return Mailbox(row[0], row[1], row[2], row[3], row[4], row[5], special_use, bool(row[7]),
                   row[8])


def queue_from_row(row: Row, read_time: ReadTime) -> QueueEntry:
    return QueueEntry(
        row[0], row[1], row[2], row[3], row[4], row[5], row[6],
        read_time(row[7]), read_time(row[8]), row[9], row[10], row[11], row[12],
        row[13], row[14], row[15], bool(row[16]), bool(row[17]),
    )  # fmt: skip


def ban_from_row(row: Row, read_time: ReadTime) -> Ban:
    return Ban(row[0], read_time(row[1]), read_time(row[2]), row[3], row[4])


def new_message_row(mailbox_id: int, message: NewMessage, saved: dt.datetime, uid: int,
                    modseq: int) -> MessageRow:  # fmt: skip
    return MessageRow(mailbox_id, uid, modseq, message.blob_id, message.size,
                      aware(message.internal_date), frozenset(message.flags), saved)


def insert_params(dialect: Dialect, row: MessageRow, meta: str) -> tuple[Any, ...]:
    """INSERT_MESSAGE's parameters for `row`."""
    return (row.mailbox_id, row.uid, row.modseq, row.blob_id, row.size,
            aware(row.internal_date).isoformat(), flags_text(row.flags),
            dialect.time(row.saved_date or utc_now()), meta)  # fmt: skip
