"""The `SieveStore` role: Sieve scripts per account, the global scripts, and what the
vacation and duplicate extensions remember between deliveries (issue 19).

Owns the Protocol and its rows; both backends implement it once in `store/sql/sieve.py`.

Invariants: at most one active script per account (a partial unique index enforces it);
names are the user's, compared exactly (RFC 5804 §1.6); vacation and duplicate records
expire and expired ones never count.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol


def storable_text(value: str) -> str:
    """What a script computed (a duplicate id, a handle, a sender), as the store keeps it:
    no NUL (PostgreSQL text refuses it), at most 1000 characters."""
    return value.replace("\0", "\ufffd")[:1000]


@dataclass(frozen=True, slots=True)
class SieveScriptInfo:
    name: str
    is_active: bool
    size: int  # octets of the UTF-8 text (ManageSieve quotas, RFC 5804 §2.3)


class SieveStore(Protocol):
    async def list_sieve_scripts(self, account_id: int) -> list[SieveScriptInfo]: ...
    async def get_sieve_script(self, account_id: int, name: str) -> str | None: ...
    async def put_sieve_script(self, account_id: int, name: str, content: str,
                               now: dt.datetime) -> None:
        """Create or replace; an active script stays active."""
        ...
    async def delete_sieve_script(self, account_id: int, name: str) -> bool: ...
    async def rename_sieve_script(self, account_id: int, old: str, new: str) -> bool:
        """False when `old` is missing; the caller checks that `new` is free."""
        ...
    async def activate_sieve_script(self, account_id: int, name: str | None) -> bool:
        """Make `name` the active script (None: none active); False when missing."""
        ...
    async def active_sieve_script(self, account_id: int) -> tuple[str, str] | None:
        """(name, content) of the active script."""
        ...
    async def list_global_sieve_scripts(self) -> list[SieveScriptInfo]: ...
    async def get_global_sieve_script(self, name: str) -> str | None: ...
    async def put_global_sieve_script(self, name: str, content: str,
                                      now: dt.datetime) -> None: ...
    async def delete_global_sieve_script(self, name: str) -> bool: ...
    async def vacation_replied(self, account_id: int, handle: str, sender: str,
                               now: dt.datetime) -> bool:
        """Whether a reply for `handle` went to `sender` and has not expired."""
        ...
    async def record_vacation_reply(self, account_id: int, handle: str, sender: str,
                                    expires: dt.datetime, now: dt.datetime) -> None: ...
    async def sieve_duplicates(self, account_id: int, now: dt.datetime
                               ) -> frozenset[tuple[str, str]]:
        """The live (handle, value) ids the duplicate test has recorded (bounded)."""
        ...
    async def record_sieve_duplicates(self, account_id: int,
                                      marks: list[tuple[str, str, dt.datetime]],
                                      now: dt.datetime) -> None: ...
