"""JMAP Identities and EmailSubmission records (issue 23): the `JmapIdentityStore`
methods, written once for both backends (store/jmapidentities_api.py states the
invariants; migration 0030).

Serialisation: every writing transaction first takes the next value of the account's
counter for its kind (an upsert with RETURNING), which on PostgreSQL locks that counter
row until COMMIT; so two writers of one account and kind run one after the other, and the
values the rows carry grow in commit order (SQLite has one writer anyway).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from postroom.store.errors import CannotCalculateChanges, TooManyChanges
from postroom.store.jmapidentities_api import (
    SUBMISSIONS_KEPT,
    TOMBSTONES_KEPT,
    IdentityFields,
    JmapIdentity,
    JmapKind,
    JmapSubmission,
    ObjectChanges,
)
from postroom.store.sql.base import SqlBackend, Tx

_TABLES = {JmapKind.IDENTITY: "jmap_identities", JmapKind.SUBMISSION: "jmap_submissions"}
_IDENTITY_COLUMNS = ("id, account_id, email, is_default, name, reply_to, bcc,"
                     " text_signature, html_signature")
_SUBMISSION_COLUMNS = ("id, account_id, identity_id, email_id, thread_id, envelope, send_at,"
                       " undo_status")
_NEXT_MODSEQ = (
    "INSERT INTO jmap_object_counters (account_id, kind, modseq) VALUES (?, ?, 1)"
    " ON CONFLICT (account_id, kind) DO UPDATE SET modseq = jmap_object_counters.modseq + 1"
    " RETURNING modseq"
)
_COUNTER = "SELECT modseq, pruned FROM jmap_object_counters WHERE account_id = ? AND kind = ?"
_MAX_STATE_DIGITS = 18  # a BIGINT has 19; a longer "state" is no state of ours


def _identity(row: Sequence[Any]) -> JmapIdentity:
    return JmapIdentity(int(row[0]), int(row[1]), str(row[2]), bool(row[3]),
                        IdentityFields(str(row[4]), row[5], row[6], str(row[7]), str(row[8])))


class JmapIdentitySql(SqlBackend):
    """Statements of the `JmapIdentityStore` role."""

    # -- counters and tombstones -----------------------------------------------------------

    async def _next_modseq(self, tx: Tx, account_id: int, kind: JmapKind) -> int:
        row = await tx.fetch_one(_NEXT_MODSEQ, (account_id, str(kind)))
        return int(row[0])

    async def _state(self, account_id: int, kind: JmapKind) -> tuple[int, int]:
        """(the counter, pruned); (0, 0) for an account that never changed this kind."""
        row = await self._point_row(_COUNTER, (account_id, str(kind)))
        return (0, 0) if row is None else (int(row[0]), int(row[1]))

    async def _prune_tombstones(self, tx: Tx, account_id: int, kind: JmapKind) -> None:
        table = _TABLES[kind]
        rows = await tx.fetch(f"SELECT id, modseq FROM {table} WHERE account_id = ?"
                              " AND is_destroyed = ? ORDER BY modseq DESC, id DESC"
                              f" {self._no_limit()} OFFSET ?",
                              (account_id, True, TOMBSTONES_KEPT))
        if not rows:
            return
        await tx.execute_many(f"DELETE FROM {table} WHERE id = ?", [(row[0],) for row in rows])
        newest = max(int(row[1]) for row in rows)
        await tx.fetch("UPDATE jmap_object_counters SET pruned = ? WHERE account_id = ?"
                       " AND kind = ? AND pruned < ?", (newest, account_id, str(kind), newest))

    def _no_limit(self) -> str:
        # OFFSET needs a LIMIT on SQLite (-1: none); PostgreSQL spells "none" ALL.
        return "LIMIT ALL" if self.dialect.is_pyformat else "LIMIT -1"

    async def _destroy_rows(self, tx: Tx, account_id: int, kind: JmapKind,
                            ids: Sequence[int], modseq: int) -> None:  # fmt: skip
        await tx.execute_many(f"UPDATE {_TABLES[kind]} SET is_destroyed = ?, modseq = ?"
                              " WHERE id = ? AND account_id = ?",
                              [(True, modseq, one, account_id) for one in ids])
        await self._prune_tombstones(tx, account_id, kind)

    async def jmap_object_changes(self, account_id: int, kind: JmapKind, since_state: str,
                                  max_changes: int | None = None) -> ObjectChanges:  # fmt: skip
        current, pruned = await self._state(account_id, kind)
        since = int(since_state) if since_state.isdigit() \
            and len(since_state) <= _MAX_STATE_DIGITS else -1
        if since < pruned or since > current:
            raise CannotCalculateChanges(f"state {since_state!r} is unknown or too old")
        rows = await self._rows(f"SELECT id, created_modseq, is_destroyed FROM {_TABLES[kind]}"
                                " WHERE account_id = ? AND modseq > ? AND modseq <= ?"
                                " ORDER BY id", (account_id, since, current))
        changes = ObjectChanges(since, current, [], [], [])
        for row in rows:
            is_new, is_gone = int(row[1]) > since, bool(row[2])
            if is_new and is_gone:
                continue  # created and destroyed in between: the client never saw it
            (changes.destroyed if is_gone else changes.created if is_new
             else changes.updated).append(int(row[0]))
        count = len(changes.created) + len(changes.updated) + len(changes.destroyed)
        if max_changes is not None and count > max_changes:
            raise TooManyChanges(f"{count} changes since that state, over {max_changes}")
        return changes

    # -- identities ------------------------------------------------------------------------

    async def jmap_identities(self, account_id: int) -> tuple[int, list[JmapIdentity]]:
        state, _ = await self._state(account_id, JmapKind.IDENTITY)
        rows = await self._rows(f"SELECT {_IDENTITY_COLUMNS} FROM jmap_identities"
                                " WHERE account_id = ? AND is_destroyed = ? ORDER BY id",
                                (account_id, False))
        return state, [_identity(row) for row in rows]

    async def _defaults(self, reader: Any, account_id: int) -> dict[int, str]:
        rows = await reader("SELECT id, email FROM jmap_identities WHERE account_id = ?"
                            " AND is_default = ? AND is_destroyed = ? ORDER BY id",
                            (account_id, True, False))
        return {int(row[0]): str(row[1]) for row in rows}

    async def jmap_sync_identities(self, account_id: int, emails: Sequence[str]) -> None:
        wanted = set(emails)
        if _default_plan(await self._defaults(self._rows, account_id), wanted) == ([], []):
            return  # the usual case: nothing to write
        async with self._tx() as tx:
            modseq = await self._next_modseq(tx, account_id, JmapKind.IDENTITY)  # the lock
            stale, missing = _default_plan(await self._defaults(tx.fetch, account_id), wanted)
            await tx.execute_many(
                "INSERT INTO jmap_identities (account_id, email, is_default, name,"
                " text_signature, html_signature, created_modseq, modseq, is_destroyed)"
                " VALUES (?, ?, ?, '', '', '', ?, ?, ?)",
                [(account_id, email, True, modseq, modseq, False) for email in missing])
            if stale:
                await self._destroy_rows(tx, account_id, JmapKind.IDENTITY, stale, modseq)

    async def jmap_create_identity(self, account_id: int, email: str, fields: IdentityFields,
                                   max_identities: int) -> JmapIdentity | None:  # fmt: skip
        async with self._tx() as tx:
            modseq = await self._next_modseq(tx, account_id, JmapKind.IDENTITY)
            count = await tx.fetch_one("SELECT COUNT(*) FROM jmap_identities WHERE"
                                       " account_id = ? AND is_default = ?"
                                       " AND is_destroyed = ?", (account_id, False, False))
            if int(count[0]) >= max_identities:
                return None
            row = await tx.fetch_one(
                "INSERT INTO jmap_identities (account_id, email, is_default, name, reply_to,"
                " bcc, text_signature, html_signature, created_modseq, modseq, is_destroyed)"
                f" VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {_IDENTITY_COLUMNS}",
                (account_id, email, False, fields.name, fields.reply_to, fields.bcc,
                 fields.text_signature, fields.html_signature, modseq, modseq, False))
        return _identity(row)

    async def jmap_update_identity(self, account_id: int, identity_id: int,
                                   fields: IdentityFields) -> JmapIdentity | None:  # fmt: skip
        async with self._tx() as tx:
            modseq = await self._next_modseq(tx, account_id, JmapKind.IDENTITY)
            rows = await tx.fetch(
                "UPDATE jmap_identities SET name = ?, reply_to = ?, bcc = ?,"
                " text_signature = ?, html_signature = ?, modseq = ? WHERE id = ?"
                f" AND account_id = ? AND is_destroyed = ? RETURNING {_IDENTITY_COLUMNS}",
                (fields.name, fields.reply_to, fields.bcc, fields.text_signature,
                 fields.html_signature, modseq, identity_id, account_id, False))
        return _identity(rows[0]) if rows else None

    async def jmap_destroy_identity(self, account_id: int, identity_id: int) -> bool:
        async with self._tx() as tx:
            modseq = await self._next_modseq(tx, account_id, JmapKind.IDENTITY)
            rows = await tx.fetch("SELECT id FROM jmap_identities WHERE id = ?"
                                  " AND account_id = ? AND is_default = ? AND is_destroyed = ?",
                                  (identity_id, account_id, False, False))
            if rows:
                await self._destroy_rows(tx, account_id, JmapKind.IDENTITY, [identity_id],
                                         modseq)
        return bool(rows)

    # -- submissions -----------------------------------------------------------------------

    def _submission(self, row: Sequence[Any]) -> JmapSubmission:
        return JmapSubmission(int(row[0]), int(row[1]), str(row[2]), str(row[3]), str(row[4]),
                              str(row[5]), self.dialect.read_time(row[6]), str(row[7]))

    async def jmap_add_submission(self, submission: JmapSubmission) -> JmapSubmission:
        account_id = submission.account_id
        async with self._tx() as tx:
            modseq = await self._next_modseq(tx, account_id, JmapKind.SUBMISSION)
            row = await tx.fetch_one(
                "INSERT INTO jmap_submissions (account_id, identity_id, email_id, thread_id,"
                " envelope, send_at, undo_status, created_modseq, modseq, is_destroyed)"
                f" VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {_SUBMISSION_COLUMNS}",
                (account_id, submission.identity_id, submission.email_id,
                 submission.thread_id, submission.envelope,
                 self.dialect.time(submission.send_at), submission.undo_status, modseq,
                 modseq, False))
            oldest = await tx.fetch("SELECT id FROM jmap_submissions WHERE account_id = ?"
                                    " AND is_destroyed = ? ORDER BY id DESC"
                                    f" {self._no_limit()} OFFSET ?",
                                    (account_id, False, SUBMISSIONS_KEPT))
            if oldest:
                await self._destroy_rows(tx, account_id, JmapKind.SUBMISSION,
                                         [int(one[0]) for one in oldest], modseq)
        return self._submission(row)

    async def jmap_submissions(self, account_id: int) -> tuple[int, list[JmapSubmission]]:
        state, _ = await self._state(account_id, JmapKind.SUBMISSION)
        rows = await self._rows(f"SELECT {_SUBMISSION_COLUMNS} FROM jmap_submissions"
                                " WHERE account_id = ? AND is_destroyed = ? ORDER BY id",
                                (account_id, False))
        return state, [self._submission(row) for row in rows]

    async def jmap_destroy_submission(self, account_id: int, submission_id: int) -> bool:
        async with self._tx() as tx:
            modseq = await self._next_modseq(tx, account_id, JmapKind.SUBMISSION)
            rows = await tx.fetch("SELECT id FROM jmap_submissions WHERE id = ?"
                                  " AND account_id = ? AND is_destroyed = ?",
                                  (submission_id, account_id, False))
            if rows:
                await self._destroy_rows(tx, account_id, JmapKind.SUBMISSION,
                                         [submission_id], modseq)
        return bool(rows)


def _default_plan(current: dict[int, str], wanted: set[str]) -> tuple[list[int], list[str]]:
    """(default rows to destroy, addresses to add): one live row per wanted address."""
    kept: set[str] = set()
    stale = []
    for identity_id, email in current.items():
        if email in wanted and email not in kept:
            kept.add(email)
        else:
            stale.append(identity_id)
    return stale, sorted(wanted - kept)
