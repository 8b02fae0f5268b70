"""Password hashing: argon2id for new passwords, Dovecot schemes for imported ones.

Owns the stored hash format. New hashes are `{ARGON2ID}$argon2id$…` (Dovecot's scheme
prefix, so the format stays recognisable to admins). docker-mailserver stores
`{SHA512-CRYPT}$6$…` (and sometimes `{SHA256-CRYPT}`, `{BLF-CRYPT}`); those verify too, so
imported users keep their passwords. Hashing and verifying are slow on purpose, so callers
on the event loop go through `asyncio.to_thread` (see accounts/service.py).
"""

from __future__ import annotations

import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from passlib.hash import bcrypt, sha256_crypt, sha512_crypt

_ARGON2 = PasswordHasher()  # argon2-cffi's RFC 9106 low-memory defaults
_SCHEME = re.compile(r"^\{([A-Z0-9-]+)\}(.*)$", re.DOTALL)
_CRYPT_SCHEMES = {"SHA512-CRYPT": sha512_crypt, "SHA256-CRYPT": sha256_crypt,
                  "BLF-CRYPT": bcrypt}


def hash_password(password: str) -> str:
    return "{ARGON2ID}" + _ARGON2.hash(password)


def verify_password(password: str, stored: str) -> bool:
    """True when `password` matches `stored`; a malformed hash never matches."""
    match = _SCHEME.match(stored)
    scheme, digest = (match.group(1), match.group(2)) if match else _guess_scheme(stored)
    try:
        if scheme in {"ARGON2ID", "ARGON2I"}:
            return bool(_ARGON2.verify(digest, password))
        handler = _CRYPT_SCHEMES.get(scheme)
        return bool(handler and handler.verify(password, digest))
    except (VerificationError, InvalidHashError, ValueError, TypeError):
        return False


def _guess_scheme(stored: str) -> tuple[str, str]:
    """Bare crypt strings (no `{SCHEME}` prefix), as some passwd files hold them."""
    prefixes = {"$argon2id$": "ARGON2ID", "$argon2i$": "ARGON2I", "$6$": "SHA512-CRYPT",
                "$5$": "SHA256-CRYPT", "$2y$": "BLF-CRYPT", "$2b$": "BLF-CRYPT"}
    for prefix, scheme in prefixes.items():
        if stored.startswith(prefix):
            return scheme, stored
    return "", stored


def needs_rehash(stored: str) -> bool:
    """Imported hashes are upgraded to argon2id at the next successful login."""
    return not stored.startswith("{ARGON2ID}")
