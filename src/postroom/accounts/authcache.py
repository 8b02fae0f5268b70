"""The verified-login cache: Dovecot's auth cache for postroom (AUTH_CACHE_TTL/_SIZE).

Owns remembering, in memory only, that a password was verified against an account's
stored hash, so a client that logs in every few minutes (a phone polling IMAP) does not
pay a full argon2id verification (~100 ms of CPU) each time.

Decisions and invariants:
- Only successes are remembered; a wrong password is never cached and always pays the
  full hash, so guessing stays as expensive as without the cache.
- An entry holds the canonical address, the stored hash it was verified against, a keyed
  digest of the password and its expiry — never the password. The digest is BLAKE2b keyed
  with 32 random bytes made when the process starts and never written anywhere, so the
  entries are worthless outside this process and forgotten at restart.
- A hit needs the account's *current* stored hash to equal the remembered one: a password
  change or an account deletion (and re-creation, which makes a new salt) ends the entry
  without any explicit invalidation. `forget` is there for the same process's own changes.
- Entries expire `ttl` seconds after the full verification; a hit does not extend them
  (Dovecot's auth_cache_ttl), so every password is verified in full at least once a TTL.
- At most `size` entries, least recently used dropped first.
- The trade-off: an attacker who can read this process's memory gets key and digests and
  could test guesses at BLAKE2b speed instead of argon2id speed; such an attacker can
  equally read passwords as clients send them. AUTH_CACHE_TTL=0 turns the cache off.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass

from postroom.clock import Clock, SystemClock
from postroom.config import Config

DEFAULT_TTL_SECONDS = 3600
DEFAULT_SIZE = 10_000
_KEY_BYTES = 32


@dataclass(frozen=True, slots=True)
class _Entry:
    stored_hash: str
    digest: bytes
    expires: dt.datetime


class AuthCache:
    def __init__(self, ttl_seconds: float = DEFAULT_TTL_SECONDS, size: int = DEFAULT_SIZE,
                 clock: Clock | None = None) -> None:
        self._ttl = dt.timedelta(seconds=ttl_seconds)
        self._size = size
        self._clock = clock or SystemClock()
        self._key = secrets.token_bytes(_KEY_BYTES)  # per process: never stored
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    @classmethod
    def from_config(cls, config: Config, clock: Clock | None = None) -> AuthCache:
        return cls(config.auth_cache_ttl, config.auth_cache_size, clock)

    @property
    def is_enabled(self) -> bool:
        return self._ttl > dt.timedelta(0) and self._size > 0

    def __len__(self) -> int:
        return len(self._entries)

    def remember(self, address: str, stored_hash: str, password: str) -> None:
        """Record a successful full verification of `password` against `stored_hash`."""
        if not self.is_enabled:
            return
        entry = _Entry(stored_hash, self._digest(address, password),
                       self._clock.now() + self._ttl)
        self._entries[address] = entry
        self._entries.move_to_end(address)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def is_verified(self, address: str, stored_hash: str, password: str) -> bool:
        """True when `password` was verified against this very `stored_hash` within the
        TTL. False says nothing: the caller then verifies in full."""
        entry = self._entries.get(address)
        if entry is None:
            return False
        if self._clock.now() >= entry.expires:
            del self._entries[address]
            return False
        same_hash = hmac.compare_digest(entry.stored_hash.encode(), stored_hash.encode())
        same_password = hmac.compare_digest(entry.digest, self._digest(address, password))
        if not same_hash:  # the password changed (or the account was made anew)
            del self._entries[address]
            return False
        if same_password:
            self._entries.move_to_end(address)
        return same_password

    def forget(self, address: str) -> None:
        self._entries.pop(address, None)

    def _digest(self, address: str, password: str) -> bytes:
        # The address is hashed in too, so equal passwords of two users look unrelated.
        hasher = hashlib.blake2b(key=self._key, digest_size=32, person=b"postroom-auth")
        hasher.update(address.encode("utf-8", "surrogatepass"))
        hasher.update(b"\0")
        hasher.update(password.encode("utf-8", "surrogatepass"))
        return hasher.digest()
