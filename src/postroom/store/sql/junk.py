"""The per-account learning junk filter's token counts (issue 18).

`JunkSql`: the `JunkStore` methods (store/junk_api.py), written once for both backends.
Token lists are sent in slices of `SLICE` so no statement passes either backend's limit
on parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

from postroom.store.junk_api import JunkTotals, TokenCounts
from postroom.store.sql.base import SqlBackend, Tx

SLICE = 400

_ADD_TOKENS = ("INSERT INTO junk_tokens (account_id, token, spam, ham) VALUES (?, ?, ?, ?)"
               " ON CONFLICT (account_id, token) DO UPDATE SET"
               " spam = junk_tokens.spam + excluded.spam, ham = junk_tokens.ham + excluded.ham")
_ADD_TOTALS = ("INSERT INTO junk_totals (account_id, spam, ham) VALUES (?, ?, ?)"
               " ON CONFLICT (account_id) DO UPDATE SET"
               " spam = junk_totals.spam + excluded.spam, ham = junk_totals.ham + excluded.ham")


def _in(count: int) -> str:
    return "(" + ", ".join("?" * count) + ")"


class JunkSql(SqlBackend):
    """Statements of the `JunkStore` role."""

    async def junk_totals(self, account_id: int) -> JunkTotals:
        row = await self._point_row("SELECT spam, ham FROM junk_totals WHERE account_id = ?",
                                    (account_id,))
        return JunkTotals(int(row[0]), int(row[1])) if row else JunkTotals(0, 0)

    async def junk_stats(self, account_id: int) -> JunkTotals:
        totals = await self.junk_totals(account_id)
        row = await self._row(
            "SELECT (SELECT count(*) FROM junk_tokens WHERE account_id = ?),"
            " (SELECT count(*) FROM junk_senders WHERE account_id = ?)", (account_id,) * 2)
        return JunkTotals(totals.spam, totals.ham, int(row[0]), int(row[1]))

    async def junk_token_counts(self, account_id: int, tokens: Sequence[str]
                                ) -> dict[str, TokenCounts]:
        found: dict[str, TokenCounts] = {}
        unique = sorted(set(tokens))
        for start in range(0, len(unique), SLICE):
            part = unique[start : start + SLICE]
            rows = await self._rows("SELECT token, spam, ham FROM junk_tokens"
                                    " WHERE account_id = ? AND token IN " + _in(len(part)),
                                    (account_id, *part))
            found.update((row[0], TokenCounts(int(row[1]), int(row[2]))) for row in rows)
        return found

    async def junk_train(self, account_id: int, message_key: str, tokens: Sequence[str], *,
                         is_spam: bool) -> bool:
        unique = sorted(set(tokens))
        async with self._tx() as tx:
            row = await tx.fetch_one("SELECT is_spam FROM junk_trained WHERE account_id = ?"
                                     " AND message_key = ?" + self.dialect.for_update,
                                     (account_id, message_key))
            if row is not None and bool(row[0]) == is_spam:
                return False
            if row is not None:
                await self._untrain(tx, account_id, unique, was_spam=not is_spam)
            spam, ham = (1, 0) if is_spam else (0, 1)
            await tx.execute_many(_ADD_TOKENS, [(account_id, token, spam, ham)
                                                for token in unique])
            await tx.fetch(_ADD_TOTALS, (account_id, spam, ham))
            await tx.fetch("INSERT INTO junk_trained (account_id, message_key, is_spam)"
                           " VALUES (?, ?, ?) ON CONFLICT (account_id, message_key)"
                           " DO UPDATE SET is_spam = excluded.is_spam",
                           (account_id, message_key, int(is_spam)))
        return True

    async def _untrain(self, tx: Tx, account_id: int, tokens: Sequence[str], *,
                       was_spam: bool) -> None:
        column = "spam" if was_spam else "ham"
        greatest = self.dialect.greatest
        for start in range(0, len(tokens), SLICE):
            part = tokens[start : start + SLICE]
            await tx.fetch(f"UPDATE junk_tokens SET {column} = {greatest}({column} - 1, 0)"
                           " WHERE account_id = ? AND token IN " + _in(len(part)),
                           (account_id, *part))
        await tx.fetch(f"UPDATE junk_totals SET {column} = {greatest}({column} - 1, 0)"
                       " WHERE account_id = ?", (account_id,))

    async def junk_note_senders(self, account_id: int, addresses: Sequence[str]) -> None:
        unique = sorted(set(addresses))
        if not unique:
            return
        async with self._tx() as tx:
            await tx.execute_many("INSERT INTO junk_senders (account_id, address)"
                                  " VALUES (?, ?) ON CONFLICT DO NOTHING",
                                  [(account_id, address) for address in unique])

    async def junk_known_senders(self, account_id: int, addresses: Sequence[str]
                                 ) -> set[str]:
        unique = sorted(set(addresses))
        if not unique:
            return set()
        # Primary-key probes, one per address: on the loop on SQLite (each delivery with
        # SPF pass asks for its sender).
        rows = await self._point_rows("SELECT address FROM junk_senders WHERE account_id = ?"
                                      " AND address IN " + _in(len(unique)),
                                      (account_id, *unique))
        return {row[0] for row in rows}
