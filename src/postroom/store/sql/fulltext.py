"""The full-text index (issue 22): the `FulltextStore` methods for both backends.

SQLite keeps the texts in an FTS5 table with the trigram tokenizer (case-sensitive: the
texts and the needle are case-folded by postroom, as SEARCH folds them), one row per
message with rowid = mailbox_id << 32 | uid, without positions (detail=none); the rows
holding every trigram of the string are candidates, and instr() on their stored text
confirms each one exactly. PostgreSQL keeps them in a plain table with pg_trgm GIN
indexes, queried with `LIKE '%needle%'` (exact by definition; the index only narrows).
The statements that differ are in `_Spelling`, one per dialect; the rest is shared.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from postroom.store.errors import NotFound
from postroom.store.fulltext_api import (
    MIN_NEEDLE,
    FulltextBatch,
    FulltextDoc,
    FulltextMatch,
    FulltextTodo,
)
from postroom.store.sql.base import SqlBackend, Tx

_EXISTS = " WHERE EXISTS (SELECT 1 FROM messages WHERE mailbox_id = ? AND uid = ?)"
_UID_BITS = 32
_UID_MASK = (1 << _UID_BITS) - 1


# The trigrams select candidates; instr() on the stored text confirms each exactly.
_FTS_MATCH = ("SELECT rowid FROM fulltext WHERE fulltext MATCH ? AND rowid BETWEEN ? AND ?"
              " AND (instr(body, ?) > 0")
MAX_TRIGRAMS = 24  # of a long string, spread over it: any subset selects a superset


@dataclass(frozen=True, slots=True)
class _Spelling:
    insert: str  # params: mailbox_id, uid, header, body, then _EXISTS's mailbox_id, uid
    search_body: str  # SQLite: trigrams, lowest and highest rowid, needle; PostgreSQL:
    search_text: str  # mailbox id and the pattern; for TEXT the header's test too


_SQLITE = _Spelling(
    # FTS5 has no upsert: the row (if a rename's cascade left one) is deleted first.
    insert="INSERT INTO fulltext (rowid, header, body) SELECT (? << 32) | ?, ?, ?" + _EXISTS,
    search_body=_FTS_MATCH + ")",
    search_text=_FTS_MATCH + " OR instr(header, ?) > 0)",
)
_POSTGRES = _Spelling(
    insert="INSERT INTO fulltext (mailbox_id, uid, header, body) SELECT ?, ?, ?, ?" + _EXISTS
           + " ON CONFLICT (mailbox_id, uid) DO UPDATE SET header = excluded.header,"
           " body = excluded.body",
    search_body="SELECT uid FROM fulltext WHERE mailbox_id = ? AND body LIKE ? ESCAPE '!'",
    search_text="SELECT uid FROM fulltext WHERE mailbox_id = ?"
                " AND (body LIKE ? ESCAPE '!' OR header LIKE ? ESCAPE '!')",
)


def storable(text: str) -> bool:
    """Text both databases keep as given: no NUL, no lone surrogate."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _like_pattern(folded: str) -> str:
    escaped = folded.replace("!", "!!").replace("%", "!%").replace("_", "!_")
    return f"%{escaped}%"


def trigram_query(folded: str) -> str:
    """An FTS5 query for the rows holding every trigram of `folded` (at most
    MAX_TRIGRAMS of them, spread over the string), each quoted as a string."""
    grams = sorted({folded[i:i + 3] for i in range(len(folded) - 2)})
    if len(grams) > MAX_TRIGRAMS:
        step = len(grams) / MAX_TRIGRAMS
        grams = [grams[int(i * step)] for i in range(MAX_TRIGRAMS)]
    return " AND ".join('"' + gram.replace('"', '""') + '"' for gram in grams)


class FulltextSql(SqlBackend):
    """Statements of the `FulltextStore` role."""

    @property
    def _spelling(self) -> _Spelling:
        return _SQLITE if self.dialect.name == "sqlite" else _POSTGRES

    async def fulltext_pending(self, mailboxes: int, messages: int) -> list[FulltextBatch]:
        behind = await self._rows(
            "SELECT b.id, COALESCE(p.indexed_uid, 0), b.uidnext - 1 FROM mailboxes b"
            " LEFT JOIN fulltext_progress p ON p.mailbox_id = b.id"
            " WHERE b.uidnext - 1 > COALESCE(p.indexed_uid, 0) ORDER BY b.id LIMIT ?",
            (mailboxes,))
        batches = []
        for mailbox_id, indexed, last in behind:
            rows = await self._rows(
                "SELECT uid, blob_id, meta FROM messages WHERE mailbox_id = ? AND uid > ?"
                " ORDER BY uid LIMIT ?", (mailbox_id, indexed, messages))
            todo = tuple(FulltextTodo(int(uid), str(blob), str(meta or ""))
                         for uid, blob, meta in rows)  # fmt: skip
            # All given: the index may claim the mailbox's last UID (gaps are expunged).
            upto = int(last) if len(todo) < messages else todo[-1].uid
            if todo:
                upto = max(upto, todo[-1].uid)  # one appended since `last` was read
            batches.append(FulltextBatch(int(mailbox_id), upto, todo, int(last)))
        return batches

    async def fulltext_record(self, mailbox_id: int, upto: int,
                              docs: Sequence[FulltextDoc]) -> None:
        async with self._tx() as tx:
            try:
                await self._locked_mailbox(tx, mailbox_id)  # appends and expunges wait
            except NotFound:
                return
            await self._record_docs(tx, mailbox_id, docs)
            await tx.fetch(
                "INSERT INTO fulltext_progress (mailbox_id, indexed_uid) VALUES (?, ?)"
                " ON CONFLICT (mailbox_id) DO UPDATE SET indexed_uid ="
                f" {self.dialect.greatest}(fulltext_progress.indexed_uid, excluded.indexed_uid)",
                (mailbox_id, upto))

    async def _record_docs(self, tx: Tx, mailbox_id: int, docs: Sequence[FulltextDoc]) -> None:
        kept = [doc for doc in docs if doc.header is not None and doc.body is not None]
        if self.dialect.name == "sqlite" and kept:
            await tx.execute_many("DELETE FROM fulltext WHERE rowid = ?",
                                  [((mailbox_id << _UID_BITS) | doc.uid,) for doc in kept])
        await tx.execute_many(self._spelling.insert,
                              [(mailbox_id, doc.uid, doc.header, doc.body, mailbox_id, doc.uid)
                               for doc in kept])  # fmt: skip
        skipped = [(mailbox_id, doc.uid, mailbox_id, doc.uid) for doc in docs
                   if doc.header is None or doc.body is None]  # fmt: skip
        if skipped:
            await tx.execute_many("INSERT INTO fulltext_skipped (mailbox_id, uid) SELECT ?, ?"
                                  + _EXISTS + " ON CONFLICT DO NOTHING", skipped)

    async def fulltext_search(self, mailbox_id: int, folded: str, *,
                              with_header: bool) -> FulltextMatch | None:
        if len(folded) < MIN_NEEDLE or not storable(folded):
            return None
        progress = await self._point_row(
            "SELECT indexed_uid FROM fulltext_progress WHERE mailbox_id = ?", (mailbox_id,))
        if progress is None or not progress[0]:
            return FulltextMatch(0, frozenset(), frozenset())
        skipped = await self._rows("SELECT uid FROM fulltext_skipped WHERE mailbox_id = ?",
                                   (mailbox_id,))
        return FulltextMatch(int(progress[0]), await self._matching(mailbox_id, folded,
                                                                    with_header),
                             frozenset(int(row[0]) for row in skipped))

    async def _matching(self, mailbox_id: int, folded: str, with_header: bool
                        ) -> frozenset[int]:  # fmt: skip
        spelling = self._spelling
        if self.dialect.name == "sqlite":
            low = mailbox_id << _UID_BITS
            params = (trigram_query(folded), low, low | _UID_MASK, folded)
            if with_header:
                rows = await self._rows(spelling.search_text, (*params, folded))
            else:
                rows = await self._rows(spelling.search_body, params)
            return frozenset(int(row[0]) & _UID_MASK for row in rows)
        pattern = _like_pattern(folded)
        if with_header:
            rows = await self._rows(spelling.search_text, (mailbox_id, pattern, pattern))
        else:
            rows = await self._rows(spelling.search_body, (mailbox_id, pattern))
        return frozenset(int(row[0]) for row in rows)
