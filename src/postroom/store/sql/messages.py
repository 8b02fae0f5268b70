"""Messages (`Mailstore`'s second half): the reads, COPY and MOVE, and the expunge
statements. The hot writes — append, STORE, EXPUNGE — and the SELECT summaries stay in
each backend (SQLite runs them in its group commit; PostgreSQL under the mailbox row's
lock), built from this module's and `rows.py`'s statements.

Expunged UIDs are remembered (RFC 7162 §3.2.5.2) so QRESYNC can report them as
VANISHED; once a mailbox has had EXPUNGES_KEPT expunges since the last prune, its records
older than the newest EXPUNGES_KEPT go (migration 0007).
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence

import postroom.store.api as api  # EXPUNGES_KEPT read at each call: tests lower it
from postroom.store.api import (
    CopyResult,
    MessageRow,
    recorded_expunges,
    with_forgotten,
)
from postroom.store.errors import NotFound
from postroom.store.sql.base import Params, SqlBackend, Tx
from postroom.store.sql.dialect import Dialect
from postroom.store.sql.rows import (
    ROWS_BUILT_ON_LOOP,
    SELECT_MESSAGES,
    Row,
    message_from_row,
    messages_from_rows,
)

# A FETCH of at most this many UIDs reads their rows as point reads (store/sqlite.py runs
# those on the event loop); more go off the loop at once.
POINT_READ_UIDS = 64

# The subqueries run only when a prune is due.
_PRUNE_EXPUNGED = (
    "UPDATE mailboxes SET expunges_since_prune = 0,"
    " pruned_uid = {greatest}(pruned_uid, coalesce((SELECT max(uid) FROM expunged"
    "  WHERE mailbox_id = :id AND modseq <= (SELECT modseq FROM expunged"
    "  WHERE mailbox_id = :id ORDER BY modseq DESC LIMIT 1 OFFSET :keep)), 0)),"
    " pruned_modseq = {greatest}(pruned_modseq, coalesce((SELECT modseq FROM expunged"
    "  WHERE mailbox_id = :id ORDER BY modseq DESC LIMIT 1 OFFSET :keep), 0))"
    " WHERE id = :id AND expunges_since_prune >= :keep"
)


def select_expunged(dialect: Dialect) -> str:
    """The UIDs and blobs of the messages an expunge of `(mailbox_id, uids)` removes."""
    return ("SELECT uid, blob_id FROM messages WHERE mailbox_id = ? AND uid"
            + dialect.in_uids + " ORDER BY uid")


def expunge_statements(dialect: Dialect, mailbox_id: int, found: list[int],
                       modseq: int) -> list[tuple[str, Params]]:  # fmt: skip
    """Remove the messages with the UIDs `found` at MODSEQ `modseq`, which becomes the
    mailbox's highest; record them, and prune the records when due. The records are
    copied from the rows before they go: each keeps its blob (JMAP's Email id, migration
    0026), in the same one statement as before."""
    uids = dialect.uids(found)
    return [
        ("INSERT INTO expunged (mailbox_id, uid, modseq, blob_id) SELECT mailbox_id, uid, ?,"
         " blob_id FROM messages WHERE mailbox_id = ? AND uid" + dialect.in_uids,
         (modseq, mailbox_id, uids)),
        ("DELETE FROM messages WHERE mailbox_id = ? AND uid" + dialect.in_uids,
         (mailbox_id, uids)),
        ("UPDATE mailboxes SET highest_modseq = ?,"
         " expunges_since_prune = expunges_since_prune + ? WHERE id = ?",
         (modseq, len(found), mailbox_id)),
        (_PRUNE_EXPUNGED.format(greatest=dialect.greatest),
         {"id": mailbox_id, "keep": api.EXPUNGES_KEPT}),
        ("DELETE FROM expunged WHERE mailbox_id = ? AND modseq <="
         " (SELECT pruned_modseq FROM mailboxes WHERE id = ?)", (mailbox_id, mailbox_id)),
    ]  # fmt: skip


class MessageSql(SqlBackend):
    @abc.abstractmethod
    async def _copy_rows(self, tx: Tx, source_id: int, pairs: list[tuple[int, int]],
                         target_id: int, modseq: int) -> None:  # fmt: skip
        """Copy the messages (old UID, new UID) into the target mailbox at `modseq`,
        keeping flags and internal date; the copy's saved date is now (RFC 4315 §3,
        RFC 8514)."""

    async def _built(self, rows: list[Row]) -> list[MessageRow]:
        read_time = self.dialect.read_time
        if len(rows) > ROWS_BUILT_ON_LOOP:
            # ~2.5 µs a row: 100,000 rows would hold the event loop for a quarter second.
            return await asyncio.to_thread(messages_from_rows, rows, read_time)
        return messages_from_rows(rows, read_time)

    async def list_messages(self, mailbox_id: int, *, changed_since: int = 0) -> list[MessageRow]:
        if changed_since <= 0:  # the whole mailbox: the primary key serves the UID order
            return await self._built(await self._rows(SELECT_MESSAGES + " ORDER BY uid",
                                                      (mailbox_id,)))
        # What changed since a view's baseline: a few rows, by the modseq index.
        rows = await self._point_rows(SELECT_MESSAGES + " AND modseq > ? ORDER BY uid",
                                      (mailbox_id, changed_since))
        return await self._built(rows)

    async def get_message(self, mailbox_id: int, uid: int) -> MessageRow | None:
        row = await self._point_row(SELECT_MESSAGES + " AND uid = ?", (mailbox_id, uid))
        return message_from_row(row, {}, self.dialect.read_time) if row else None

    async def get_messages(self, mailbox_id: int, uids: Sequence[int]) -> list[MessageRow]:
        rows = await self._few_or_many(uids)(
            SELECT_MESSAGES + " AND uid" + self.dialect.in_uids + " ORDER BY uid",
            (mailbox_id, self.dialect.uids(uids)))
        return await self._built(rows)

    async def get_meta(self, mailbox_id: int, uid: int) -> str:
        row = await self._point_row("SELECT meta FROM messages WHERE mailbox_id = ? AND uid = ?",
                                    (mailbox_id, uid))  # fmt: skip
        if row is None:
            raise NotFound(f"no message {uid} in mailbox {mailbox_id}")
        return str(row[0])

    async def get_metas(self, mailbox_id: int, uids: Sequence[int]) -> dict[int, str]:
        rows = await self._few_or_many(uids)(
            "SELECT uid, meta FROM messages WHERE mailbox_id = ? AND uid" + self.dialect.in_uids,
            (mailbox_id, self.dialect.uids(uids)))
        return {row[0]: str(row[1]) for row in rows}

    def _few_or_many(self, uids: Sequence[int]) -> Callable[..., Awaitable[list[Row]]]:
        """How to read the rows of these UIDs: point reads for a few (a FETCH of what a
        client shows), a read off the loop for more."""
        return self._point_rows if len(uids) <= POINT_READ_UIDS else self._rows

    async def expunged_since(self, mailbox_id: int, modseq: int) -> list[int]:
        # One statement, one snapshot: the prune horizon and the records it left.
        rows = await self._point_rows("SELECT b.pruned_modseq, b.pruned_uid, e.uid"
                                " FROM mailboxes b LEFT JOIN expunged e ON e.mailbox_id = b.id"
                                " AND e.modseq > ? WHERE b.id = ? ORDER BY e.uid",
                                (modseq, mailbox_id))  # fmt: skip
        uids, pruned_uid = recorded_expunges(rows, modseq)
        if not pruned_uid:
            return uids
        present = await self._rows("SELECT uid FROM messages WHERE mailbox_id = ?"
                                   " AND uid <= ?", (mailbox_id, pruned_uid))  # fmt: skip
        return with_forgotten(uids, pruned_uid, (row[0] for row in present))

    async def copy_messages(
        self, source_mailbox_id: int, uids: Sequence[int], target_mailbox_id: int
    ) -> CopyResult:
        async with self._tx() as tx:
            return await self._copy_on(tx, source_mailbox_id, uids, target_mailbox_id)

    async def move_messages(
        self, source_mailbox_id: int, uids: Sequence[int], target_mailbox_id: int
    ) -> CopyResult:
        # RFC 6851 §3.3: copy then expunge, atomically (one transaction).
        async with self._tx() as tx:
            result = await self._copy_on(tx, source_mailbox_id, uids, target_mailbox_id)
            await self._expunge_on(tx, source_mailbox_id, result.source_uids)
        return result

    async def _copy_on(self, tx: Tx, source_id: int, uids: Sequence[int],
                       target_id: int) -> CopyResult:  # fmt: skip
        target = (await self._lock_mailboxes(tx, source_id, target_id))[target_id]
        rows = await tx.fetch("SELECT uid FROM messages WHERE mailbox_id = ? AND uid"
                              + self.dialect.in_uids + " ORDER BY uid",
                              (source_id, self.dialect.uids(uids)))  # fmt: skip
        source_uids = tuple(row[0] for row in rows)
        if not source_uids:
            return CopyResult(target.uidvalidity, (), ())
        # RFC 4315 §3: target UIDs are assigned in source-UID order.
        target_uids = tuple(range(target.uidnext, target.uidnext + len(source_uids)))
        modseq = target.highest_modseq + 1
        await self._copy_rows(tx, source_id, list(zip(source_uids, target_uids, strict=True)),
                              target_id, modseq)  # fmt: skip
        await tx.fetch("UPDATE mailboxes SET uidnext = ?, highest_modseq = ? WHERE id = ?",
                       (target_uids[-1] + 1, modseq, target_id))  # fmt: skip
        tx.changed(target.account_id, target_id, "append")
        return CopyResult(target.uidvalidity, source_uids, target_uids)

    async def _expunge_on(self, tx: Tx, mailbox_id: int, uids: Iterable[int]) -> list[int]:
        """Expunge in a write transaction, the mailbox row locked (PostgreSQL's EXPUNGE,
        and MOVE's on both): the UIDs found."""
        mailbox = await self._locked_mailbox(tx, mailbox_id)
        rows = await tx.fetch(select_expunged(self.dialect),
                              (mailbox_id, self.dialect.uids(uids)))  # fmt: skip
        if not rows:
            return []
        found, modseq = [row[0] for row in rows], mailbox.highest_modseq + 1
        for sql, params in expunge_statements(self.dialect, mailbox_id, found, modseq):
            await tx.fetch(sql, params)
        tx.blobs.update(row[1] for row in rows)  # released after COMMIT when unreferenced
        tx.changed(mailbox.account_id, mailbox_id, "expunge", modseq)
        return found
