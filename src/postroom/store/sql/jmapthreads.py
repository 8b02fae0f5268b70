"""JMAP thread ids (issue 23): the `JmapThreadStore` methods, written once for both
backends (store/jmapthreads_api.py states the invariants; migrations 0029 and 0031).

Unthreaded Emails are found above per-mailbox marks (`email_thread_marks`): each record
raises a mailbox's mark to just below its first message whose Email still has no thread
(or to its last UID), so the search reads only what arrived since. A mark is kept with
the UIDVALIDITY it counts in; under another one it counts as 0.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from typing import Any

from postroom.store.jmapthreads_api import (
    MAX_MESSAGE_ID_LENGTH,
    MAX_THREAD_MESSAGE_IDS,
    SUBJECT_DIGEST_LENGTH,
    ThreadAssignment,
    UnthreadedEmail,
)
from postroom.store.sql.base import SqlBackend, Tx
from postroom.store.sql.dialect import utc_text
from postroom.store.sql.rows import Row

_PER_STATEMENT = 5000  # ids in one IN list

_MARK = ("LEFT JOIN email_thread_marks k ON k.mailbox_id = b.id"
         " AND k.uidvalidity = b.uidvalidity")  # fmt: skip
_NO_THREAD = ("NOT EXISTS (SELECT 1 FROM email_threads t WHERE t.account_id = b.account_id"
              " AND t.blob_id = m.blob_id)")  # fmt: skip
_UNTHREADED = (
    f"SELECT m.blob_id, m.meta, m.internal_date FROM mailboxes b {_MARK}"
    " JOIN messages m ON m.mailbox_id = b.id AND m.uid > COALESCE(k.uid, 0)"
    f" WHERE b.account_id = ? AND {_NO_THREAD} ORDER BY m.saved_date, m.mailbox_id, m.uid"
    " LIMIT ?"
)
# Per mailbox: its mark now, its first message above it whose Email has no thread, and
# its last UID. ORDER BY uid LIMIT 1 stops at the first such row (MIN would not).
_MARKS = (
    "SELECT b.id, b.uidvalidity, COALESCE(k.uid, 0),"
    " (SELECT m.uid FROM messages m WHERE m.mailbox_id = b.id AND m.uid > COALESCE(k.uid, 0)"
    f" AND {_NO_THREAD} ORDER BY m.uid LIMIT 1),"
    " (SELECT MAX(m.uid) FROM messages m WHERE m.mailbox_id = b.id)"
    f" FROM mailboxes b {_MARK} WHERE b.account_id = ?"
)
_SET_MARK = (
    "INSERT INTO email_thread_marks (mailbox_id, uidvalidity, uid) VALUES (?, ?, ?)"
    " ON CONFLICT (mailbox_id) DO UPDATE SET uidvalidity = excluded.uidvalidity,"
    " uid = excluded.uid"
)
_EXISTS = ("EXISTS (SELECT 1 FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id"
           " WHERE m.blob_id = t.blob_id AND b.account_id = t.account_id)")  # fmt: skip


def _chunks(values: Iterable[str]) -> Iterable[list[str]]:
    listed = sorted(set(values))
    return (listed[start:start + _PER_STATEMENT]
            for start in range(0, len(listed), _PER_STATEMENT))  # fmt: skip


def _recordable(message_ids: Sequence[str]) -> list[str]:
    kept = [one for one in dict.fromkeys(message_ids) if 0 < len(one) <= MAX_MESSAGE_ID_LENGTH]
    return kept[:MAX_THREAD_MESSAGE_IDS]


def _new_mark(row: Row) -> int | None:
    """The mailbox's mark after a record, None when it stays."""
    old, first_unthreaded, last = int(row[2]), row[3], row[4]
    mark = int(first_unthreaded) - 1 if first_unthreaded is not None else int(last or 0)
    return mark if mark > old else None


class JmapThreadSql(SqlBackend):
    """Statements of the `JmapThreadStore` role."""

    def _text_list(self, values: list[str]) -> Any:
        # The parameter of `dialect.in_uids` for text values (jmapstate.text_list's rule).
        return json.dumps(values) if self.dialect.name == "sqlite" else values

    async def jmap_unthreaded(self, account_id: int, limit: int) -> list[UnthreadedEmail]:
        rows = await self._rows(_UNTHREADED, (account_id, limit))
        found: dict[str, UnthreadedEmail] = {}
        for blob_id, meta, internal_date in rows:
            if blob_id not in found:  # a later copy of the same Email
                found[blob_id] = UnthreadedEmail(str(blob_id), str(meta or ""),
                                                 dt.datetime.fromisoformat(internal_date))
        return list(found.values())

    async def jmap_threads_for_message_ids(self, account_id: int, message_ids: Sequence[str]
                                           ) -> dict[str, str]:  # fmt: skip
        found: dict[str, str] = {}
        for chunk in _chunks(one for one in message_ids if len(one) <= MAX_MESSAGE_ID_LENGTH):
            rows = await self._rows(
                "SELECT message_id, thread_id FROM thread_message_ids WHERE account_id = ?"
                " AND message_id" + self.dialect.in_uids,
                (account_id, self._text_list(chunk)))  # fmt: skip
            found.update((str(row[0]), str(row[1])) for row in rows)
        return found

    async def jmap_threads_for_subjects(self, account_id: int, digests: Sequence[str]
                                        ) -> dict[str, str]:  # fmt: skip
        found: dict[str, str] = {}
        for chunk in _chunks(one for one in digests if len(one) == SUBJECT_DIGEST_LENGTH):
            rows = await self._rows(
                "SELECT subject_digest, thread_id FROM thread_subjects WHERE account_id = ?"
                " AND subject_digest" + self.dialect.in_uids,
                (account_id, self._text_list(chunk)))  # fmt: skip
            found.update((str(row[0]), str(row[1])) for row in rows)
        return found

    async def jmap_record_threads(self, account_id: int,
                                  rows: Sequence[ThreadAssignment]) -> None:  # fmt: skip
        async with self._tx() as tx:
            await tx.execute_many(
                "INSERT INTO email_threads (account_id, blob_id, thread_id, received)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (account_id, blob_id) DO NOTHING",
                [(account_id, row.blob_id, row.thread_id, utc_text(row.received))
                 for row in rows])  # fmt: skip
            await tx.execute_many(
                "INSERT INTO thread_message_ids (account_id, message_id, thread_id)"
                " VALUES (?, ?, ?) ON CONFLICT (account_id, message_id) DO NOTHING",
                [(account_id, message_id, row.thread_id) for row in rows
                 for message_id in _recordable(row.message_ids)])  # fmt: skip
            await tx.execute_many(
                "INSERT INTO thread_subjects (account_id, subject_digest, thread_id)"
                " VALUES (?, ?, ?) ON CONFLICT (account_id, subject_digest) DO NOTHING",
                [(account_id, row.subject_digest, row.thread_id) for row in rows
                 if row.subject_digest is not None
                 and len(row.subject_digest) == SUBJECT_DIGEST_LENGTH])  # fmt: skip
            await self._raise_marks(tx, account_id)

    async def _raise_marks(self, tx: Tx, account_id: int) -> None:
        marks = []
        for row in await tx.fetch(_MARKS, (account_id,)):
            mark = _new_mark(row)
            if mark is not None:
                marks.append((int(row[0]), int(row[1]), mark))
        if marks:
            await tx.execute_many(_SET_MARK, marks)

    async def jmap_thread_ids(self, account_id: int, blob_ids: Sequence[str]
                              ) -> dict[str, str]:  # fmt: skip
        found: dict[str, str] = {}
        for chunk in _chunks(blob_ids):
            rows = await self._rows(
                "SELECT blob_id, thread_id FROM email_threads WHERE account_id = ?"
                " AND blob_id" + self.dialect.in_uids, (account_id, self._text_list(chunk)))
            found.update((str(row[0]), str(row[1])) for row in rows)
        return found

    async def jmap_thread_emails(self, account_id: int, thread_ids: Sequence[str]
                                 ) -> dict[str, list[str]]:  # fmt: skip
        found: dict[str, list[str]] = {}
        collate = self.dialect.collate
        for chunk in _chunks(thread_ids):
            rows = await self._rows(
                "SELECT t.thread_id, t.blob_id FROM email_threads t WHERE t.account_id = ?"
                f" AND t.thread_id{self.dialect.in_uids} AND {_EXISTS}"
                f" ORDER BY t.received{collate}, t.blob_id{collate}",
                (account_id, self._text_list(chunk)))  # fmt: skip
            for thread_id, blob_id in rows:
                found.setdefault(str(thread_id), []).append(str(blob_id))
        return found
