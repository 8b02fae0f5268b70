"""The `ApiTokenStore` role (issue 23): API tokens, the bearer credentials of JMAP.

Owns the Protocol and its row; both backends implement it once in
`store/sql/apitokens.py`. Policy (format, how many, when `last_used` is written) belongs
to accounts/apitokens.py; this role only keeps rows.

Invariants: only a token's SHA-256 (hex) is stored, unique over every account, so a
token names exactly one row; a name is unique per account; a row goes with its account.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ApiToken:
    id: int
    account_id: int
    name: str
    token_hash: str  # SHA-256 of the token, hex
    created: dt.datetime
    last_used: dt.datetime | None


class ApiTokenStore(Protocol):
    async def list_api_tokens(self, account_id: int) -> list[ApiToken]:
        """The account's tokens, by name."""
        ...

    async def add_api_token(self, account_id: int, name: str, token_hash: str,
                            now: dt.datetime) -> ApiToken | None:
        """The new row; None when the account has a token of that name already."""
        ...

    async def api_token_by_hash(self, token_hash: str) -> ApiToken | None:
        """The token whose hash this is (a point read), if any."""
        ...

    async def delete_api_token(self, account_id: int, token_id: int) -> bool:
        """Revoke one of the account's tokens; False when it has no such token."""
        ...

    async def touch_api_token(self, token_id: int, now: dt.datetime) -> None:
        """Set the token's `last_used` to `now`."""
        ...
