"""The few places where SQLite's and PostgreSQL's SQL differ, as one object per backend.

Shared statements are written once with `?` placeholders (and `:name` for named ones);
`Dialect.sql` turns them into psycopg's `%s` / `%(name)s` for PostgreSQL, cached per
statement. Time values are UTC text of one fixed width on SQLite (text order is time
order) and `timestamptz` on PostgreSQL; UID lists are a JSON array (`json_each`) on
SQLite and a `bigint[]` on PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

_NAMED = re.compile(r"(?<![:\w]):([a-z_]+)\b")


def aware(when: dt.datetime) -> dt.datetime:
    """Naive datetimes are taken as UTC; the store only ever returns aware ones."""
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when


def utc_text(when: dt.datetime) -> str:
    # Fixed width, YYYY-MM-DDTHH:MM:SS.ffffff+00:00 (the text order is the time order);
    # isoformat takes a fifth of strftime's time, and every connection's ban check
    # formats one.
    return aware(when).astimezone(dt.UTC).isoformat(timespec="microseconds")


def _uids_json(uids: Iterable[int]) -> str:
    return json.dumps(sorted({int(uid) for uid in uids}))


def _uid_list(uids: Iterable[int]) -> list[int]:
    return sorted({int(uid) for uid in uids})


def _as_stored(value: Any) -> Any:
    return value  # psycopg already returns aware datetimes (sessions run in UTC)


@lru_cache(maxsize=512)
def _pyformat(sql: str) -> str:
    return _NAMED.sub(r"%(\1)s", sql.replace("%", "%%").replace("?", "%s"))


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str
    is_pyformat: bool  # psycopg's placeholders
    collate: str  # after an ORDER BY of text: byte order on both (PostgreSQL's is locale's)
    greatest: str  # the two-argument maximum
    position: str  # 1-based position of a substring, 0 when absent
    for_update: str  # locks the rows a write transaction read (nothing on SQLite)
    for_update_mailbox: str  # the same, for `rows.MAILBOX_SELECT`
    in_uids: str  # "uid" + this: the column is in the `uids` parameter
    uid_table: str  # a table of the `uids` parameter, its column named `value`
    uids: Callable[[Iterable[int]], Any]  # the parameter for a set of UIDs or ids
    time: Callable[[dt.datetime], Any]  # the parameter for a time
    read_time: Callable[[Any], dt.datetime]  # a stored time, back
    unique_violation: type[Exception]

    def sql(self, text: str) -> str:
        return _pyformat(text) if self.is_pyformat else text


SQLITE = Dialect(
    name="sqlite", is_pyformat=False, collate="", greatest="max", position="instr",
    for_update="", for_update_mailbox="",
    in_uids=" IN (SELECT value FROM json_each(?))", uid_table="json_each(?)",
    uids=_uids_json, time=utc_text, read_time=dt.datetime.fromisoformat,
    unique_violation=sqlite3.IntegrityError,
)


def postgres_dialect(unique_violation: type[Exception]) -> Dialect:
    """PostgreSQL's (psycopg's UniqueViolation is given: only postgres.py imports it)."""
    return Dialect(
        name="postgres", is_pyformat=True, collate=' COLLATE "C"', greatest="GREATEST",
        position="strpos", for_update=" FOR UPDATE", for_update_mailbox=" FOR UPDATE OF b",
        in_uids=" = ANY(?)", uid_table="unnest(?::bigint[]) AS value",
        uids=_uid_list, time=aware, read_time=_as_stored,
        unique_violation=unique_violation,
    )
