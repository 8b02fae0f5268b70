"""The `WebStore` role (issue 21): the web console's sessions, the admin role of
accounts, and the audit log of admin actions.

Owns the Protocol and its rows; both backends implement it once in `store/sql/web.py`.

Invariants:
- A session is stored under the SHA-256 of its cookie token (`token_hash`), never the
  token: a copy of the database logs no one in. Sessions end at `expires`, on logout, and
  all of an account's at once on a password change (`delete_web_sessions_of`); deleting
  an account deletes its sessions (ON DELETE CASCADE).
- `second_factor_pending` sessions only carry a login half done (password right, the
  second factor not yet given): they authorise nothing.
- The audit log is append-only here: entries are never changed, only read.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class WebSession:
    token_hash: str  # hex SHA-256 of the cookie's token
    address: str  # the account (canonical address)
    created: dt.datetime
    authenticated: dt.datetime  # the last time its user gave the password (re-auth)
    expires: dt.datetime
    second_factor_pending: bool = False
    client: str = ""  # the client address key at login, for the user's session list


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at: dt.datetime
    actor: str  # the admin's address, or "cli" for `postroom admin …`
    action: str  # e.g. "account.create", "admin.grant"
    target: str  # what it acted on (an address, a domain, a queue id)
    detail: str = ""
    client: str = ""  # the client address key of the request


class WebStore(Protocol):
    async def add_web_session(self, session: WebSession) -> None:
        """Store a new session (token hashes are unique: random 256-bit tokens); sessions
        expired at its creation time are deleted."""
        ...

    async def web_session(self, token_hash: str, now: dt.datetime) -> WebSession | None:
        """The session when it exists and has not expired at `now`."""
        ...

    async def update_web_session(self, token_hash: str, authenticated: dt.datetime,
                                 expires: dt.datetime, second_factor_pending: bool) -> bool:
        """Re-authentication or second factor done; False when the session is gone."""
        ...

    async def delete_web_session(self, token_hash: str) -> bool: ...

    async def delete_web_sessions_of(self, address: str, keep: str = "") -> int:
        """End every session of `address` but the one whose hash is `keep`; how many
        ended. Also prunes every expired session."""
        ...

    async def is_admin(self, address: str) -> bool: ...

    async def set_admin(self, address: str, is_admin: bool) -> bool:
        """Grant or revoke the admin role; False when no such account exists."""
        ...

    async def list_admins(self) -> list[str]: ...

    async def add_audit_entry(self, entry: AuditEntry) -> None: ...

    async def audit_entries(self, since: dt.datetime | None = None, actor: str | None = None,
                            limit: int = 1000) -> list[AuditEntry]:
        """The newest `limit` entries at or after `since` (by `actor`), oldest first."""
        ...
