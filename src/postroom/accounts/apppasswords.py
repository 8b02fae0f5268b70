"""App passwords (issue 21): per-device passwords a user makes in the web self-service
and uses for IMAP, SMTP submission, POP3 and ManageSieve instead of the main password.

Owns their format, limits and checking; `AccountService.authenticate` asks `matching`.

Decisions and invariants:
- We generate them (the user never chooses one): 24 characters from a 32-letter alphabet
  without look-alikes (l, o, 0, 1), shown as six groups of four — 120 random bits. They
  are shown once and stored as the main password is (argon2id, accounts/passwords.py).
- The first four characters (20 of the 120 bits) are kept in clear as the row's `tag`: a
  login looks up only the rows with that tag (almost always none or one), so however many
  app passwords an account has, a login hashes at most a handful; the 100 secret bits
  left are far beyond guessing.
- Input is forgiving: spaces, dashes and case are ignored, so a user may type the groups
  as shown or run together.
- Revocation deletes the row: the next login cannot find it, so it stops working at once
  (the verified-login cache is only consulted for a row that still exists).
- At most MAX_PER_ACCOUNT per account; names are 1–64 printable characters, unique per
  account.
"""

from __future__ import annotations

import secrets

from postroom.errors import BadSyntax, Refused
from postroom.store.credentials_api import AppPassword, CredentialStore

ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"  # 32 letters: 5 bits each, no l/o/0/1
LENGTH = 24
GROUP = 4
TAG_LENGTH = 4
MAX_PER_ACCOUNT = 20
MAX_NAME_LENGTH = 64
_ALLOWED = frozenset(ALPHABET)


def generate() -> str:
    """A new app password, in its canonical (ungrouped) form."""
    return "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))


def grouped(password: str) -> str:
    """As shown to the user: `abcd-efgh-…`."""
    return "-".join(password[i:i + GROUP] for i in range(0, len(password), GROUP))


def canonical(typed: str) -> str | None:
    """The app password `typed` spells, or None when it cannot be one (then the login
    is checked against the main password only)."""
    text = typed.replace(" ", "").replace("-", "").lower()
    if len(text) != LENGTH or not set(text) <= _ALLOWED:
        return None
    return text


def tag_of(password: str) -> str:
    return password[:TAG_LENGTH]


def check_name(name: str) -> str:
    """The name, stripped; BadSyntax when empty, too long or with control characters."""
    stripped = name.strip()
    if not stripped or len(stripped) > MAX_NAME_LENGTH:
        raise BadSyntax(f"a name of 1 to {MAX_NAME_LENGTH} characters, please")
    if any(not char.isprintable() for char in stripped):
        raise BadSyntax("the name must not contain control characters")
    return stripped


async def check_room(store: CredentialStore, account_id: int) -> None:
    if len(await store.list_app_passwords(account_id)) >= MAX_PER_ACCOUNT:
        raise Refused(f"at most {MAX_PER_ACCOUNT} app passwords per account; revoke one first",
                      code="LIMIT")


def describe(password: AppPassword) -> str:
    """How the login history names a login with this app password."""
    return f"app password {password.name}"
