"""Mailboxes and subscriptions (`Mailstore`'s first half) and the importers' UID spaces
(`Importer`).

Every mailbox gets a random `object_id` when created (`new_object_id`), never another
mailbox's: in-process state per mailbox is keyed by it, since SQLite reuses ids.
UIDVALIDITY comes from one global counter seeded from the clock, so a name never gets a
UIDVALIDITY it had before (RFC 9051 §2.3.1.1), even after the database is re-created;
an imported UIDVALIDITY moves the counter past it. Names are case-sensitive but INBOX
(RFC 9051 §5.1); a rename takes the mailbox's inferiors and subscriptions along.
"""

from __future__ import annotations

import abc
import secrets
import time
from dataclasses import replace

from postroom.errors import Refused
from postroom.store.api import (
    Mailbox,
    MailboxCounts,
    MailboxUsage,
    MessageRow,
    NewMessage,
    SpecialUse,
    keywords_of,
)
from postroom.store.errors import AlreadyExists, NotFound
from postroom.store.sql.base import SqlBackend, Tx
from postroom.store.sql.dialect import Dialect, aware
from postroom.store.sql.metadata import COPY_MAILBOX_METADATA
from postroom.store.sql.rows import (
    INBOX,
    INSERT_MESSAGE,
    MAILBOX_SELECT,
    SEPARATOR,
    flags_text,
    mailbox_from_row,
    normalise_mailbox_name,
    utc_now,
)

# Counters kept by triggers (migration 0008); the account's mailboxes come from the
# (account_id, name) index: one point read, on the loop like the mailbox row on SQLite.
_SELECT_USAGE = (
    "SELECT b.message_count, b.total_size, sum(o.message_count), sum(o.total_size)"
    " FROM mailboxes b JOIN mailboxes o ON o.account_id = b.account_id WHERE b.id = ?"
    " GROUP BY b.id"
)
Rename = tuple[int, str, str]  # mailbox id, old name, new name


async def next_uidvalidity(tx: Tx, dialect: Dialect) -> int:
    # RFC 9051 §2.3.1.1: a name must never get a UIDVALIDITY it had before. The upsert
    # locks the counter's row across PostgreSQL nodes.
    row = await tx.fetch_one(
        "INSERT INTO counters (name, value) VALUES ('uidvalidity', ?) ON CONFLICT (name)"
        f" DO UPDATE SET value = {dialect.greatest}(counters.value + 1, excluded.value)"
        " RETURNING value", (int(time.time()),))  # fmt: skip
    return int(row[0])


async def raise_uidvalidity_counter(tx: Tx, dialect: Dialect, uidvalidity: int) -> None:
    # Later mailboxes must never be handed a UIDVALIDITY that was imported.
    await tx.fetch("INSERT INTO counters (name, value) VALUES ('uidvalidity', ?)"
                   " ON CONFLICT (name) DO UPDATE SET"
                   f" value = {dialect.greatest}(counters.value, excluded.value)",
                   (uidvalidity,))  # fmt: skip


async def insert_mailbox(tx: Tx, dialect: Dialect, account_id: int, name: str,
                         special_use: SpecialUse | None) -> int:  # fmt: skip
    name = normalise_mailbox_name(name)
    if await tx.fetch("SELECT 1 FROM mailboxes WHERE account_id = ? AND name = ?",
                      (account_id, name)):  # fmt: skip
        raise AlreadyExists(f"mailbox {name} already exists")
    if not await tx.fetch("SELECT 1 FROM accounts WHERE id = ?", (account_id,)):
        raise NotFound(f"no account with id {account_id}")
    row = await tx.fetch_one(
        "INSERT INTO mailboxes (account_id, name, uidvalidity, special_use, object_id)"
        " VALUES (?, ?, ?, ?, ?) RETURNING id",
        (account_id, name, await next_uidvalidity(tx, dialect),
         special_use.value if special_use else None, new_object_id()),
    )  # fmt: skip
    tx.changed(account_id, row[0], "mailbox")
    return int(row[0])


def new_object_id() -> str:
    """A mailbox's never-reused identity (migration 0010, RFC 8474 MAILBOXID): 'M' and 128
    random bits in the URL-safe base64 alphabet, which is RFC 8474's objectid alphabet."""
    return "M" + secrets.token_urlsafe(16)


async def subscribe(tx: Tx, account_id: int, name: str, subscribed: bool) -> None:
    if subscribed:
        await tx.fetch("INSERT INTO subscriptions (account_id, name) VALUES (?, ?)"
                       " ON CONFLICT DO NOTHING", (account_id, name))  # fmt: skip
    else:
        await tx.fetch("DELETE FROM subscriptions WHERE account_id = ? AND name = ?",
                       (account_id, name))  # fmt: skip


class MailboxSql(SqlBackend):
    @abc.abstractmethod
    async def _rename_rows(self, tx: Tx, renames: list[Rename]) -> None:
        """Give each mailbox its new name; a new name may be another moving mailbox's old
        one ("x/a" → "x"), which a name-by-name unique check would refuse."""

    async def list_mailboxes(self, account_id: int) -> list[Mailbox]:
        # Small (MAX_MAILBOXES_PER_ACCOUNT): on SQLite's loop connection, within its step
        # budget, else on the reader thread (store/sqlite.py ON_LOOP_STEPS).
        rows = await self._point_rows(MAILBOX_SELECT + " WHERE b.account_id = ?"
                                " ORDER BY b.name <> 'INBOX', b.name" + self.dialect.collate,
                                (account_id,))  # fmt: skip
        return [mailbox_from_row(row) for row in rows]

    async def get_mailbox(self, account_id: int, name: str) -> Mailbox | None:
        row = await self._point_row(MAILBOX_SELECT + " WHERE b.account_id = ? AND b.name = ?",
                                    (account_id, normalise_mailbox_name(name)))  # fmt: skip
        return mailbox_from_row(row) if row else None

    async def get_mailbox_by_id(self, mailbox_id: int) -> Mailbox | None:
        row = await self._point_row(MAILBOX_SELECT + " WHERE b.id = ?", (mailbox_id,))
        return mailbox_from_row(row) if row else None

    async def create_mailbox(
        self, account_id: int, name: str, special_use: SpecialUse | None = None
    ) -> Mailbox:
        try:
            async with self._tx() as tx:
                mailbox_id = await insert_mailbox(tx, self.dialect, account_id, name,
                                                  special_use)  # fmt: skip
                row = await tx.fetch_one(MAILBOX_SELECT + " WHERE b.id = ?", (mailbox_id,))
        except self.dialect.unique_violation:  # created meanwhile on another node
            raise AlreadyExists(f"mailbox {name} already exists") from None
        return mailbox_from_row(row)

    async def delete_mailbox(self, mailbox_id: int) -> None:
        async with self._tx() as tx:
            mailbox = await self._locked_mailbox(tx, mailbox_id)
            if mailbox.name == INBOX:
                # RFC 9051 §6.3.4: it is an error to attempt to delete INBOX.
                raise Refused("INBOX cannot be deleted", code="CANNOT")
            tx.blobs.update(r[0] for r in await tx.fetch(
                "SELECT DISTINCT blob_id FROM messages WHERE mailbox_id = ?", (mailbox_id,)))
            await tx.fetch("DELETE FROM mailboxes WHERE id = ?", (mailbox_id,))
            tx.changed(mailbox.account_id, mailbox_id, "mailbox")

    async def rename_mailbox(self, mailbox_id: int, new_name: str) -> None:
        new_name = normalise_mailbox_name(new_name)
        try:
            async with self._tx() as tx:
                mailbox = await self._locked_mailbox(tx, mailbox_id)
                if mailbox.name == INBOX:
                    await self._rename_inbox(tx, mailbox, new_name)
                else:
                    await self._rename_subtree(tx, mailbox, new_name)
        except self.dialect.unique_violation:  # a clashing name created on another node
            raise AlreadyExists(f"mailbox {new_name} already exists") from None

    async def _rename_subtree(self, tx: Tx, mailbox: Mailbox, new_name: str) -> None:
        """Rename a mailbox and its inferiors ("a/b" goes along with "a"), subscriptions too."""
        if new_name == mailbox.name:
            raise AlreadyExists(f"mailbox {new_name} already exists")
        if new_name.startswith(mailbox.name + SEPARATOR):
            raise Refused(f"cannot rename {mailbox.name} to {new_name}", code="CANNOT")
        rows = await tx.fetch("SELECT id, name FROM mailboxes WHERE account_id = ?",
                              (mailbox.account_id,))  # fmt: skip
        prefix = mailbox.name + SEPARATOR
        moving = {mid: name for mid, name in rows if mid == mailbox.id or name.startswith(prefix)}
        renames = [(mid, old, new_name + old[len(mailbox.name) :]) for mid, old in moving.items()]
        staying = {row[1] for row in rows if row[0] not in moving}
        if clash := next((new for _, _, new in renames if new in staying), None):
            raise AlreadyExists(f"mailbox {clash} already exists")
        await self._rename_rows(tx, renames)
        subscribed = {r[0] for r in await tx.fetch(
            "SELECT name FROM subscriptions WHERE account_id = ?", (mailbox.account_id,))}
        for mid, old, new in renames:
            if old in subscribed:
                await subscribe(tx, mailbox.account_id, old, False)
                await subscribe(tx, mailbox.account_id, new, True)
            tx.changed(mailbox.account_id, mid, "mailbox")

    async def _rename_inbox(self, tx: Tx, inbox: Mailbox, new_name: str) -> None:
        """RFC 9051 §6.3.9: messages move to a new mailbox; INBOX stays, empty."""
        new_id = await insert_mailbox(tx, self.dialect, inbox.account_id, new_name, None)
        await tx.fetch(COPY_MAILBOX_METADATA, (new_id, inbox.id))  # RFC 5464 entries too
        # The moved messages keep their UIDs, so the new mailbox continues INBOX's counters
        # (under its own fresh UIDVALIDITY); INBOX sees them expunged.
        modseq = inbox.highest_modseq + 1
        await tx.fetch("INSERT INTO expunged (mailbox_id, uid, modseq, blob_id)"
                       " SELECT mailbox_id, uid, ?, blob_id FROM messages WHERE mailbox_id = ?",
                       (modseq, inbox.id))  # fmt: skip
        await tx.fetch("UPDATE messages SET mailbox_id = ? WHERE mailbox_id = ?",
                       (new_id, inbox.id))  # fmt: skip
        await tx.fetch("UPDATE mailboxes SET uidnext = ?, highest_modseq = ? WHERE id = ?",
                       (inbox.uidnext, modseq, new_id))  # fmt: skip
        await tx.fetch("UPDATE mailboxes SET highest_modseq = ? WHERE id = ?",
                       (modseq, inbox.id))  # fmt: skip
        tx.changed(inbox.account_id, inbox.id, "expunge")

    async def set_subscribed(self, account_id: int, name: str, subscribed: bool) -> None:
        async with self._tx() as tx:
            await subscribe(tx, account_id, normalise_mailbox_name(name), subscribed)

    async def list_subscriptions(self, account_id: int) -> list[str]:
        rows = await self._point_rows("SELECT name FROM subscriptions WHERE account_id = ?"
                                " ORDER BY name" + self.dialect.collate, (account_id,))
        return [row[0] for row in rows]

    async def mailbox_counts(self, mailbox_id: int) -> MailboxCounts:
        # STATUS: on the loop within its step budget (a very large mailbox goes off it).
        row = await self._point_row(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN"
            f" {self.dialect.position}(' ' || flags || ' ', ' \\Seen ') = 0 THEN 1 END), 0),"
            " COALESCE(SUM(size), 0) FROM messages WHERE mailbox_id = ?", (mailbox_id,))
        return MailboxCounts(int(row[0]), int(row[1]), int(row[2]))

    async def mailbox_usage(self, mailbox_id: int) -> MailboxUsage:
        row = await self._point_row(_SELECT_USAGE, (mailbox_id,))
        if row is None:
            raise NotFound(f"no mailbox with id {mailbox_id}")
        return MailboxUsage(*(int(value) for value in row))

    async def mailbox_keywords(self, mailbox_id: int) -> frozenset[str]:
        # The distinct flag values, from the covering index messages_flags (migration 0004).
        # Off the loop: a scan of the whole mailbox, on STORE's path whenever it changed
        # (on the loop it cost STORE 3.2 -> 7.0 ms p50 in the mixed bench).
        rows = await self._rows(
            "SELECT DISTINCT flags FROM messages WHERE mailbox_id = ?", (mailbox_id,))
        return keywords_of(row[0] for row in rows)

    # -- importers (issue 9, accounts/dms_import.py) -----------------------------------

    async def set_mailbox_uids(self, mailbox_id: int, uidvalidity: int, uidnext: int) -> Mailbox:
        async with self._tx() as tx:
            box = await self._locked_mailbox(tx, mailbox_id)
            if uidvalidity == box.uidvalidity:
                # The same UID space: UIDNEXT may only rise (RFC 9051 §2.3.1.1: never reuse).
                if uidnext <= box.uidnext:
                    return box
                await tx.fetch("UPDATE mailboxes SET uidnext = ? WHERE id = ?",
                               (uidnext, mailbox_id))  # fmt: skip
                return replace(box, uidnext=uidnext)
            if await tx.fetch("SELECT 1 FROM messages WHERE mailbox_id = ? LIMIT 1",
                              (mailbox_id,)):  # fmt: skip
                raise Refused(f"mailbox {box.name} holds messages; its UIDVALIDITY cannot"
                              " change", code="CANNOT")
            # A new UID space: the old one's expunge records mean nothing in it, and the
            # global counter moves past the value so no other mailbox is handed it.
            await tx.fetch("DELETE FROM expunged WHERE mailbox_id = ?", (mailbox_id,))
            await raise_uidvalidity_counter(tx, self.dialect, uidvalidity)
            await tx.fetch("UPDATE mailboxes SET uidvalidity = ?, uidnext = ?,"
                           " highest_modseq = highest_modseq + 1 WHERE id = ?",
                           (uidvalidity, max(uidnext, 1), mailbox_id))  # fmt: skip
            tx.changed(box.account_id, mailbox_id, "mailbox")
            return await self._locked_mailbox(tx, mailbox_id)

    async def import_message(
        self, mailbox_id: int, message: NewMessage, *, source_key: str, uid: int | None = None
    ) -> MessageRow | None:
        saved, internal_date = utc_now(), aware(message.internal_date)
        async with self._tx() as tx:
            box = await self._locked_mailbox(tx, mailbox_id)
            if not await tx.fetch("INSERT INTO imported_keys (mailbox_id, source_key)"
                                  " VALUES (?, ?) ON CONFLICT DO NOTHING RETURNING 1",
                                  (mailbox_id, source_key)):  # fmt: skip
                return None  # imported before, even if expunged since
            # RFC 9051 §2.3.1.1: UIDs only ascend, so a wanted UID below UIDNEXT cannot be had.
            new_uid = uid if uid is not None and uid >= box.uidnext else box.uidnext
            modseq = box.highest_modseq + 1
            await tx.fetch("UPDATE mailboxes SET uidnext = ?, highest_modseq = ? WHERE id = ?",
                           (new_uid + 1, modseq, mailbox_id))  # fmt: skip
            await tx.fetch(INSERT_MESSAGE, (
                mailbox_id, new_uid, modseq, message.blob_id, message.size,
                internal_date.isoformat(), flags_text(message.flags), self.dialect.time(saved),
                message.meta))  # fmt: skip
            tx.changed(box.account_id, mailbox_id, "append")
        return MessageRow(mailbox_id, new_uid, modseq, message.blob_id, message.size,
                          internal_date, frozenset(message.flags), saved)  # fmt: skip

    async def imported_keys(self, mailbox_id: int) -> set[str]:
        rows = await self._rows("SELECT source_key FROM imported_keys WHERE mailbox_id = ?",
                                (mailbox_id,))  # fmt: skip
        return {row[0] for row in rows}
