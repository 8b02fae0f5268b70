"""What the shared SQL needs from a backend: a write transaction (`Tx`) and reads.

A backend class derives from the concern classes of this package (which all derive from
`SqlBackend`) and supplies the transaction and the three kinds of read. All SQL given to
them uses `?` placeholders; the backend applies its dialect.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, ClassVar, Protocol

from postroom.store.api import Mailbox
from postroom.store.errors import NotFound
from postroom.store.sql.dialect import Dialect
from postroom.store.sql.rows import MAILBOX_SELECT, Row, mailbox_from_row

Params = Sequence[Any] | dict[str, Any]


class Tx(Protocol):
    """One write transaction. Its changes are published, and the `blobs` it names
    released when unreferenced, only after COMMIT."""

    blobs: set[str]

    async def fetch(self, sql: str, params: Params = ()) -> list[Row]: ...
    async def fetch_one(self, sql: str, params: Params = ()) -> Row: ...
    async def execute_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...
    def changed(self, account_id: int, mailbox_id: int, kind: str, modseq: int = 0) -> None: ...


class SqlBackend(abc.ABC):
    dialect: ClassVar[Dialect]

    @abc.abstractmethod
    def _tx(self) -> AbstractAsyncContextManager[Tx]:
        """A write transaction: committed when the block ends, rolled back if it raises."""

    @abc.abstractmethod
    async def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """A read of any size, off the event loop where the driver blocks."""

    @abc.abstractmethod
    async def _point_rows(self, sql: str, params: Sequence[Any]) -> list[Row]:
        """A small read (by a unique key, an account's mailboxes): SQLite answers it on
        the loop when it can within a step budget (store/sqlite.py)."""

    async def _row(self, sql: str, params: Sequence[Any] = ()) -> Row:
        rows = await self._rows(sql, params)
        return rows[0] if rows else None

    async def _point_row(self, sql: str, params: Sequence[Any]) -> Row:
        rows = await self._point_rows(sql, params)
        return rows[0] if rows else None

    async def _lock_address(self, tx: Tx, address: str) -> None:
        """Serialise one address's failed-login count across writers (PostgreSQL: an
        advisory lock). SQLite has one writer at a time, so nothing to do there."""
        return None

    async def _locked_mailbox(self, tx: Tx, mailbox_id: int) -> Mailbox:
        """The mailbox row, locked until COMMIT on PostgreSQL: the one serialisation
        point per mailbox (SQLite's writers are serialised already)."""
        row = await tx.fetch_one(MAILBOX_SELECT + " WHERE b.id = ?"
                                 + self.dialect.for_update_mailbox, (mailbox_id,))  # fmt: skip
        if row is None:
            raise NotFound(f"no mailbox with id {mailbox_id}")
        return mailbox_from_row(row)

    async def _lock_mailboxes(self, tx: Tx, *mailbox_ids: int) -> dict[int, Mailbox]:
        # Ascending id order: two transactions locking the same pair cannot deadlock.
        return {mid: await self._locked_mailbox(tx, mid) for mid in sorted(set(mailbox_ids))}
