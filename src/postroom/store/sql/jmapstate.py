"""JMAP states and /changes (issue 23): the `JmapStateStore` methods, written once for
both backends (decision 0057, migration 0026).

A state is a snapshot of the account's mailbox vector, kept in `jmap_states` under the
SHA-256 of its canonical JSON; IMAP's per-mailbox MODSEQ and UID counters stay as they
are. /changes compares the old snapshot S with the current vector "now" (read first, so
nothing committed before the new state is missed; later changes may show up too, and are
listed again next time) and reads only what moved: rows with a MODSEQ above S's, and
expunge records above S's MODSEQ of UIDs S had. An Email (a blob) existed at S when one
of its rows (present, or expunged since S) has a UID below S's UIDNEXT in a mailbox S
knew under the same UIDVALIDITY. A mailbox gone since S that held messages hides which
Emails went with it: cannotCalculateChanges, and the client resyncs.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import string
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from postroom.store.errors import CannotCalculateChanges, NotFound, TooManyChanges
from postroom.store.jmap_api import EmailChanges, EmailCopy, MailboxChanges
from postroom.store.sql.base import SqlBackend
from postroom.store.sql.dialect import Dialect
from postroom.store.sql.rows import ROWS_BUILT_ON_LOOP, SEPARATOR, Row, utc_now

STATES_KEPT = 1000  # snapshots per account; /changes from an older one: resync
MAX_CHANGES = 50_000  # ids one /changes answers at most, whatever maxChanges says
# (mailbox, MODSEQ) conditions per statement: SQLite's expression depth (1000) and
# variable count bound an OR list; blob ids per statement, to keep each read modest.
_PAIRS_PER_STATEMENT = 200
_BLOBS_PER_STATEMENT = 5000
# Read every row of the account rather than look blobs up when the blobs are at least
# 1/_SCAN_RATIO of its messages.
_SCAN_RATIO = 4
_DIGITS = string.digits + string.ascii_lowercase
_MAX_STATE_DIGITS = 13  # base 36 of a positive BIGINT

_SELECT_VECTOR = (
    "SELECT b.object_id, b.id, b.uidvalidity, b.highest_modseq, b.uidnext, b.name,"
    " b.special_use, EXISTS (SELECT 1 FROM subscriptions s WHERE s.account_id = b.account_id"
    " AND s.name = b.name), b.message_count FROM mailboxes b WHERE b.account_id = ?"
)
_PRUNE_STATES = (
    "DELETE FROM jmap_states WHERE account_id = ? AND id <= (SELECT id FROM jmap_states"
    " WHERE account_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)"
)
_ROW_COLUMNS = ("m.mailbox_id, m.uid, m.modseq, m.blob_id, m.size, m.internal_date, m.flags,"
                " m.saved_date, b.object_id")


@dataclass(frozen=True, slots=True)
class MailboxState:
    """One mailbox in a snapshot."""

    object_id: str
    id: int
    uidvalidity: int
    modseq: int  # HIGHESTMODSEQ
    uidnext: int
    name: str
    special_use: str | None
    is_subscribed: bool
    message_count: int


Vector = dict[str, MailboxState]  # by object_id


def vector_from_rows(rows: Iterable[Sequence[Any]]) -> Vector:
    return {str(row[0]): MailboxState(str(row[0]), int(row[1]), int(row[2]), int(row[3]),
                                      int(row[4]), str(row[5]), row[6], bool(row[7]),
                                      int(row[8])) for row in rows}  # fmt: skip


def vector_json(vector: Vector) -> str:
    """The canonical text of a vector: mailboxes in object_id order, fields in order."""
    return json.dumps([[box.object_id, box.id, box.uidvalidity, box.modseq, box.uidnext,
                        box.name, box.special_use, box.is_subscribed, box.message_count]
                       for _, box in sorted(vector.items())], separators=(",", ":"))  # fmt: skip


def state_text(state_id: int) -> str:
    """The state string of snapshot `state_id`: "s" and the id in base 36."""
    digits = ""
    while True:
        state_id, digit = divmod(state_id, 36)
        digits = _DIGITS[digit] + digits
        if not state_id:
            return "s" + digits


def parse_state(text: str) -> int | None:
    """The snapshot id a state string names; None when it is not one of ours."""
    digits = text[1:]
    if (not text.startswith("s") or not 0 < len(digits) <= _MAX_STATE_DIGITS
            or not set(digits) <= set(_DIGITS)):  # fmt: skip
        return None
    state_id = int(digits, 36)
    if state_id >= 2**63 or state_text(state_id) != text:  # a BIGINT; no leading zeros
        return None
    return state_id


def text_list(dialect: Dialect, values: Iterable[str]) -> Any:
    """The parameter of `dialect.in_uids` for a list of text values (blob ids)."""
    listed = sorted(set(values))
    return json.dumps(listed) if dialect.name == "sqlite" else listed


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    return (items[start:start + size] for start in range(0, len(items), size))


def _limit(max_changes: int | None) -> int:
    return MAX_CHANGES if max_changes is None else min(max_changes, MAX_CHANGES)


def _check_count(count: int, limit: int) -> None:
    if count > limit:
        raise TooManyChanges(f"more than {limit} changes since that state")


def _is_same_box(old: MailboxState | None, new: MailboxState | None) -> bool:
    """One mailbox in one UID space (an import may give an empty mailbox another)."""
    return old is not None and new is not None and old.uidvalidity == new.uidvalidity


def refuse_lost_messages(then: Vector, now: Vector) -> None:
    """A mailbox S knew (in its UID space) that is gone and held messages then: which
    Emails went with it cannot be told, since its rows left no expunge records."""
    for box in then.values():
        if box.message_count and not _is_same_box(box, now.get(box.object_id)):
            raise CannotCalculateChanges(f"mailbox {box.name} was removed with its messages")


@dataclass(frozen=True, slots=True)
class _Moved:
    """A mailbox of "now" whose messages may have changed since S: `since` is S's
    HIGHESTMODSEQ (0: the mailbox is new to S, every row counts), `uidnext` S's UIDNEXT."""

    id: int
    since: int
    uidnext: int


def moved_mailboxes(then: Vector, now: Vector) -> list[_Moved]:
    moved = []
    for box in now.values():
        old = then.get(box.object_id)
        if old is None or not _is_same_box(old, box):  # every row is new to S
            moved.append(_Moved(box.id, 0, 1))
        elif box.modseq > old.modseq:
            moved.append(_Moved(box.id, old.modseq, old.uidnext))
    return moved


def _properties(vector: Vector) -> dict[str, tuple[Any, ...]]:
    """What JMAP shows of each mailbox besides its counts: name, role, subscription and
    parent (by identity: a parent deleted and created again is another parentId)."""
    by_name = {box.name: box.object_id for box in vector.values()}
    return {box.object_id: (box.name, box.special_use, box.is_subscribed,
                            by_name.get(box.name.rpartition(SEPARATOR)[0]))
            for box in vector.values()}  # fmt: skip


def mailbox_changes(then: Vector, now: Vector) -> tuple[list[str], list[str], list[str], bool]:
    """(created, updated, destroyed, updated_counts_only) between two vectors."""
    updated: list[str] = []
    is_property_changed = False
    old_properties, new_properties = _properties(then), _properties(now)
    for object_id in sorted(then.keys() & now.keys()):
        old, new = then[object_id], now[object_id]
        changed = old_properties[object_id] != new_properties[object_id]
        if changed or (old.modseq, old.uidvalidity) != (new.modseq, new.uidvalidity):
            updated.append(object_id)
            is_property_changed |= changed
    return (sorted(now.keys() - then.keys()), updated, sorted(then.keys() - now.keys()),
            bool(updated) and not is_property_changed)  # fmt: skip


def was_there(then: Vector, object_id: str, uidvalidity: int, uid: int) -> bool:
    """Whether a present row existed at S: its mailbox S knew, its UID below S's UIDNEXT."""
    old = then.get(object_id)
    return old is not None and old.uidvalidity == uidvalidity and uid < old.uidnext


def classify(candidates: Iterable[str], expunged: set[str],
             present: dict[str, list[tuple[str, int, int]]], then: Vector,
             ) -> tuple[list[str], list[str], list[str]]:  # fmt: skip
    """(created, updated, destroyed): `expunged` are blobs with a record of a row S had;
    `present` the rows (object_id, uidvalidity, uid) each blob has now."""
    created: list[str] = []
    updated: list[str] = []
    destroyed: list[str] = []
    for blob_id in sorted(set(candidates) | expunged):
        rows = present.get(blob_id, ())
        existed = blob_id in expunged
        for object_id, uidvalidity, uid in rows if not existed else ():
            if was_there(then, object_id, uidvalidity, uid):  # 10,000 rows: a plain loop
                existed = True
                break
        if rows:
            (updated if existed else created).append(blob_id)
        elif existed:
            destroyed.append(blob_id)
    return created, updated, destroyed


class JmapStateSql(SqlBackend):
    """Statements of the `JmapStateStore` role."""

    async def jmap_state(self, account_id: int) -> str:
        return (await self._jmap_snapshot(account_id))[0]

    async def _jmap_snapshot(self, account_id: int) -> tuple[str, Vector]:
        """The current state string and vector: one read of the mailboxes; one more of the
        snapshot by its digest, and a write only when the account changed since."""
        vector = vector_from_rows(await self._rows(_SELECT_VECTOR, (account_id,)))
        text = vector_json(vector)
        digest = hashlib.sha256(text.encode()).hexdigest()
        row = await self._point_row("SELECT id FROM jmap_states WHERE account_id = ?"
                                    " AND digest = ?", (account_id, digest))  # fmt: skip
        state_id = int(row[0]) if row else await self._insert_snapshot(account_id, digest, text)
        return state_text(state_id), vector

    async def _insert_snapshot(self, account_id: int, digest: str, text: str) -> int:
        async with self._tx() as tx:
            if not await tx.fetch("SELECT 1 FROM accounts WHERE id = ?", (account_id,)):
                raise NotFound(f"no account with id {account_id}")
            rows = await tx.fetch(
                "INSERT INTO jmap_states (account_id, digest, vector, created)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (account_id, digest) DO NOTHING RETURNING id",
                (account_id, digest, text, self.dialect.time(utc_now())))  # fmt: skip
            if not rows:  # added meanwhile by another request (another node)
                row = await tx.fetch_one("SELECT id FROM jmap_states WHERE account_id = ?"
                                         " AND digest = ?", (account_id, digest))  # fmt: skip
                return int(row[0])
            await tx.fetch(_PRUNE_STATES, (account_id, account_id, STATES_KEPT))
            return int(rows[0][0])

    async def _jmap_stored(self, account_id: int, since_state: str) -> Vector:
        state_id = parse_state(since_state)
        row = None if state_id is None else await self._point_row(
            "SELECT vector FROM jmap_states WHERE id = ? AND account_id = ?",
            (state_id, account_id))  # fmt: skip
        if row is None:
            raise CannotCalculateChanges(f"state {since_state!r} is unknown or too old")
        return {item[0]: MailboxState(*item) for item in json.loads(row[0])}

    async def jmap_mailbox_changes(self, account_id: int, since_state: str,
                                   max_changes: int | None = None) -> MailboxChanges:  # fmt: skip
        then = await self._jmap_stored(account_id, since_state)
        new_state, now = await self._jmap_snapshot(account_id)
        created, updated, destroyed, is_counts_only = mailbox_changes(then, now)
        _check_count(len(created) + len(updated) + len(destroyed), _limit(max_changes))
        return MailboxChanges(since_state, new_state, created, updated, destroyed,
                              is_counts_only)  # fmt: skip

    async def jmap_email_changes(self, account_id: int, since_state: str,
                                 max_changes: int | None = None) -> EmailChanges:  # fmt: skip
        then = await self._jmap_stored(account_id, since_state)
        new_state, now = await self._jmap_snapshot(account_id)
        if new_state == since_state:
            return EmailChanges(since_state, new_state, [], [], [])
        refuse_lost_messages(then, now)
        limit, moved = _limit(max_changes), moved_mailboxes(then, now)
        candidates = await self._changed_blobs(moved, limit)
        expunged = await self._expunged_blobs([box for box in moved if box.since])
        await self._refuse_pruned(account_id, [box for box in moved if box.since])
        present = await self._present_rows(account_id, candidates | expunged, now)
        created, updated, destroyed = classify(candidates, expunged, present, then)
        _check_count(len(created) + len(updated) + len(destroyed), limit)
        return EmailChanges(since_state, new_state, created, updated, destroyed)

    async def _changed_blobs(self, moved: list[_Moved], limit: int) -> set[str]:
        """Blobs with a row changed (or added) since S: each is created or updated, so
        more than `limit` of them is TooManyChanges at once."""
        found: set[str] = set()
        for chunk in _chunks(moved, _PAIRS_PER_STATEMENT):
            where = " OR ".join(["(mailbox_id = ? AND modseq > ?)"] * len(chunk))
            rows = await self._rows(f"SELECT DISTINCT blob_id FROM messages WHERE {where}"
                                    " LIMIT ?", [*_flat(chunk, lambda b: (b.id, b.since)),
                                                 limit + 1])  # fmt: skip
            found.update(row[0] for row in rows)
            _check_count(len(found), limit)
        return found

    async def _expunged_blobs(self, moved: list[_Moved]) -> set[str]:
        """Blobs of rows S had that were expunged since (records above S's MODSEQ, UIDs
        below S's UIDNEXT)."""
        found: set[str] = set()
        for chunk in _chunks(moved, _PAIRS_PER_STATEMENT):
            where = " OR ".join(["(mailbox_id = ? AND modseq > ? AND uid < ?)"] * len(chunk))
            rows = await self._rows(f"SELECT DISTINCT blob_id FROM expunged WHERE {where}",
                                    _flat(chunk, lambda b: (b.id, b.since, b.uidnext)))
            if any(row[0] is None for row in rows):  # recorded before migration 0026
                raise CannotCalculateChanges("expunge records without their messages' ids")
            found.update(row[0] for row in rows)
        return found

    async def _refuse_pruned(self, account_id: int, moved: list[_Moved]) -> None:
        # Read after the records: a prune in between makes this stricter, never blind.
        if not moved:
            return
        rows = await self._rows("SELECT id, pruned_modseq FROM mailboxes WHERE account_id = ?",
                                (account_id,))  # fmt: skip
        pruned = {int(row[0]): int(row[1]) for row in rows}
        if any(box.since < pruned.get(box.id, 0) for box in moved):
            raise CannotCalculateChanges("expunge records since that state were pruned")

    async def _present_rows(self, account_id: int, blob_ids: set[str], now: Vector
                            ) -> dict[str, list[tuple[str, int, int]]]:  # fmt: skip
        """Each blob's rows in the account now: (mailbox object_id, UIDVALIDITY, UID)."""
        present: dict[str, list[tuple[str, int, int]]] = {}
        if len(blob_ids) * _SCAN_RATIO >= sum(box.message_count for box in now.values()):
            # Most of the account's messages (10,000 new deliveries): one pass over its
            # rows costs a fifth of looking each blob up in the index.
            boxes = {box.id: box for box in now.values()}
            for mailbox_id, box in boxes.items():
                for blob_id, uid in await self._rows(
                        "SELECT blob_id, uid FROM messages WHERE mailbox_id = ?", (mailbox_id,)):
                    if blob_id in blob_ids:
                        present.setdefault(blob_id, []).append(
                            (box.object_id, box.uidvalidity, int(uid)))
            return present
        for row in await self._blob_rows(account_id, blob_ids, "m.blob_id, b.object_id,"
                                         " b.uidvalidity, m.uid"):  # fmt: skip
            present.setdefault(row[0], []).append((row[1], int(row[2]), int(row[3])))
        return present

    async def _blob_rows(self, account_id: int, blob_ids: Iterable[str],
                         columns: str) -> list[Row]:  # fmt: skip
        # "+b.account_id": SQLite, without statistics, would otherwise walk every row of
        # the account's mailboxes instead of the blob index (messages_blob).
        rows: list[Row] = []
        for chunk in _chunks(sorted(set(blob_ids)), _BLOBS_PER_STATEMENT):
            rows += await self._rows(
                f"SELECT {columns} FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id"
                " WHERE +b.account_id = ? AND m.blob_id" + self.dialect.in_uids,
                (account_id, text_list(self.dialect, chunk)))  # fmt: skip
        return rows

    async def jmap_emails(self, account_id: int, blob_ids: Sequence[str]
                          ) -> dict[str, list[EmailCopy]]:  # fmt: skip
        rows = await self._blob_rows(account_id, blob_ids, _ROW_COLUMNS)
        rows.sort(key=lambda row: (row[3], row[0], row[1]))
        if len(rows) > ROWS_BUILT_ON_LOOP:  # as messages.py: off the loop when many
            return await asyncio.to_thread(self._email_copies, rows)
        return self._email_copies(rows)

    def _email_copies(self, rows: list[Row]) -> dict[str, list[EmailCopy]]:
        read_time = self.dialect.read_time
        flag_cache: dict[str, frozenset[str]] = {}  # few distinct flag sets: shared
        copies: dict[str, list[EmailCopy]] = {}
        for row in rows:
            flags = flag_cache.get(row[6])
            if flags is None:
                flags = flag_cache[row[6]] = frozenset(row[6].split())
            copies.setdefault(row[3], []).append(EmailCopy(
                row[0], row[1], row[2], row[3], row[4], dt.datetime.fromisoformat(row[5]),
                flags, read_time(row[7]), row[8]))  # fmt: skip
        return copies


def _flat(chunk: Iterable[_Moved], fields: Callable[[_Moved], tuple[int, ...]]) -> list[int]:
    return [value for box in chunk for value in fields(box)]
