"""The `CredentialStore` role (issue 21): what an account holds besides its password —
app passwords, the TOTP second factor of the web login, recovery codes — and the history
of its successful logins.

Owns the Protocol and its rows; both backends implement it once in
`store/sql/credentials.py`. Policy (how many, how long, how they are made and checked)
belongs to accounts/credentials.py; this role only keeps rows.

Invariants:
- An app password's name is unique per account; `tag` (its first characters, in clear)
  narrows a login to the rows it could be, so no login hashes more than a handful.
- `claim_totp_step` is the replay guard: it succeeds at most once per time step and
  never for a step at or below the last one claimed, on every node at once (one
  conditional UPDATE).
- A recovery code is spent by one conditional UPDATE: two logins racing with the same
  code cannot both win.
- `record_logins` keeps at most `keep` rows per account, the newest.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class AppPassword:
    id: int
    account_id: int
    name: str
    tag: str
    password_hash: str
    created: dt.datetime
    last_used: dt.datetime | None


@dataclass(frozen=True, slots=True)
class TotpState:
    secret: str  # base32 (RFC 4648), as authenticator apps take it
    is_confirmed: bool  # a code was entered once: the second factor is in force
    last_step: int  # the last time step a code was accepted for (RFC 6238 §5.2)


@dataclass(frozen=True, slots=True)
class LoginRecord:
    account_id: int
    at: dt.datetime
    protocol: str  # the listener: imap, imaps, submission, pop3s, managesieve, web, …
    client: str  # the client's address key (security/peer.py), "" when not known
    credential: str  # "password", "app password NAME", "password + TOTP", …


class CredentialStore(Protocol):
    async def list_app_passwords(self, account_id: int) -> list[AppPassword]:
        """The account's app passwords, by name."""
        ...

    async def app_passwords_tagged(self, account_id: int, tag: str) -> list[AppPassword]:
        """The account's app passwords whose tag is `tag` (a point read, on the loop)."""
        ...

    async def add_app_password(self, account_id: int, name: str, tag: str,
                               password_hash: str, now: dt.datetime) -> AppPassword | None:
        """The new row; None when the account has one of that name already."""
        ...

    async def delete_app_password(self, account_id: int, password_id: int) -> bool: ...

    async def totp_state(self, account_id: int) -> TotpState | None: ...

    async def put_totp_secret(self, account_id: int, secret: str, now: dt.datetime) -> None:
        """Start (or restart) enrolment: an unconfirmed secret replaces any other."""
        ...

    async def confirm_totp(self, account_id: int, step: int) -> bool:
        """Put the secret in force, its first code's `step` claimed; False when no
        unconfirmed secret waits."""
        ...

    async def claim_totp_step(self, account_id: int, step: int) -> bool:
        """True exactly once per account for a step above every step claimed before."""
        ...

    async def delete_totp(self, account_id: int) -> bool:
        """Turn the second factor off: its secret and recovery codes go."""
        ...

    async def put_recovery_codes(self, account_id: int, code_hashes: Sequence[str]) -> None:
        """Replace every recovery code of the account."""
        ...

    async def unused_recovery_codes(self, account_id: int) -> list[tuple[int, str]]:
        """(id, code hash) of the codes not spent yet."""
        ...

    async def spend_recovery_code(self, account_id: int, code_id: int,
                                  now: dt.datetime) -> bool:
        """Mark one code used; False when it was spent already."""
        ...

    async def record_logins(self, logins: Sequence[LoginRecord], keep: int,
                            app_passwords_used: Sequence[tuple[int, dt.datetime]] = ()
                            ) -> None:
        """Append successful logins (one transaction for the batch), keep the newest
        `keep` per account, and note when app passwords were last used."""
        ...

    async def recent_logins(self, account_id: int, limit: int) -> list[LoginRecord]:
        """The newest first."""
        ...
