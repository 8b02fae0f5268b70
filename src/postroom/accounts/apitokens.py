"""API tokens (issue 23): bearer credentials for JMAP (`Authorization: Bearer prt_…`),
made and revoked on the self-service page.

Owns their format, limits and checking: `ApiTokens.create`, `list`, `revoke` and
`verify`, over the `ApiTokenStore` role (store/apitokens_api.py).

Decisions and invariants:
- A token is 32 random bytes (256 bits), shown once as "prt_" + base64url without
  padding; the prefix lets secret scanners and users tell it apart from a password.
- Only its SHA-256 (hex) is stored. Nothing can be guessed from a dictionary, so no slow
  hash is needed (as for recovery codes, accounts/totp.py), and a login is one indexed
  lookup of that hash. No constant-time comparison either: the database compares
  hashes, and learning how much of a SHA-256 matched tells nothing about the token
  (finding a preimage for a chosen prefix is as hard as guessing the token).
- `verify` writes `last_used` at most once per LAST_USED_EVERY, judged from the stored
  value, so a client polling every second costs no write per request, on any node.
- Revocation deletes the row: the next request with the token fails.
- At most MAX_PER_ACCOUNT per account; names are 1–64 printable characters, unique per
  account (the app passwords' rules: accounts/apppasswords.py `check_name`).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import secrets

from postroom.accounts.apppasswords import check_name
from postroom.clock import Clock, SystemClock
from postroom.errors import Refused
from postroom.store.api import Account
from postroom.store.apitokens_api import ApiToken, ApiTokenStore

PREFIX = "prt_"
TOKEN_BYTES = 32
TOKEN_LENGTH = len(PREFIX) + 43  # base64url of 32 bytes, unpadded
MAX_PER_ACCOUNT = 20
MAX_NAME_LENGTH = 64
LAST_USED_EVERY = dt.timedelta(minutes=1)
_BASE64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def generate() -> str:
    """A new token, as shown to the user (once)."""
    raw = base64.urlsafe_b64encode(secrets.token_bytes(TOKEN_BYTES)).rstrip(b"=")
    return PREFIX + raw.decode("ascii")


def is_token_shaped(text: str) -> bool:
    """Could `text` be a token at all? (Anything else is refused without a lookup.)"""
    return (len(text) == TOKEN_LENGTH and text.startswith(PREFIX)
            and set(text[len(PREFIX):]) <= _BASE64URL)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def describe(token: ApiToken) -> str:
    """How the login history names a login with this token."""
    return f"API token {token.name}"


class ApiTokens:
    """The account's API tokens: made, listed, revoked, checked."""

    def __init__(self, store: ApiTokenStore, clock: Clock | None = None) -> None:
        self._store = store
        self._clock = clock or SystemClock()

    async def create(self, account: Account, name: str) -> tuple[ApiToken, str]:
        """A new token named `name`: its row and the token itself (never stored)."""
        clean = check_name(name)
        if len(await self._store.list_api_tokens(account.id)) >= MAX_PER_ACCOUNT:
            raise Refused(f"at most {MAX_PER_ACCOUNT} API tokens per account; revoke one"
                          " first", code="LIMIT")
        token = generate()
        row = await self._store.add_api_token(account.id, clean, token_hash(token),
                                              self._clock.now())
        if row is None:
            raise Refused(f"there is an API token named {clean!r} already",
                          code="ALREADYEXISTS")
        return row, token

    async def list(self, account: Account) -> list[ApiToken]:
        return await self._store.list_api_tokens(account.id)

    async def revoke(self, account: Account, token_id: int) -> None:
        if not await self._store.delete_api_token(account.id, token_id):
            raise Refused("no such API token", code="NONEXISTENT")

    async def verify(self, token: str) -> ApiToken | None:
        """The token's row when `token` is a live token, else None (`last_used` noted)."""
        if not is_token_shaped(token):
            return None
        row = await self._store.api_token_by_hash(token_hash(token))
        if row is None:
            return None
        now = self._clock.now()
        if row.last_used is None or now - row.last_used >= LAST_USED_EVERY:
            await self._store.touch_api_token(row.id, now)
        return row
