"""Brute-force protection: Fail2ban's job for postroom, built in.

Owns counting failed authentications per client address key (peer.py), banning a key
that fails too often, and making every failed attempt cost the client time rather than us
CPU. `AccountService.authenticate` — the one door every protocol's login goes through —
runs each attempt through `AuthGuard.guarded`, so SMTP AUTH, IMAP and POP3 are protected
alike, without protocol code knowing.

Decisions (the defaults follow Fail2ban's sshd jail: 5 failures within 10 minutes ban
the address for 1 hour):
- A banned client's attempt is refused before any password hashing; app.py also refuses
  its new connections before the greeting.
- Attempts from one client run one at a time, and a failure is answered only after
  `failure_delay` (Dovecot's auth_failure_delay): parallel guessing gains nothing.
- At most `MAX_PARALLEL_VERIFICATIONS` password hashes are computed at once, whoever
  asks (`hashing_slot`, held around the hash only): each argon2id check takes 64 MiB
  (RFC 9106's low-memory profile), so many clients logging in together queue rather than
  exhaust memory, while a login the verified-login cache answers never waits for them.
- A success resets nothing: neither this client's count (an attacker holding one account
  must not launder guesses against another) nor anyone else's.
- Addresses in TRUSTED_NETWORKS or AUTH_BAN_IGNORE_NETWORKS are never counted or banned
  (Fail2ban's `ignoreip`; a ban made by hand does not hold for them either); their
  failures are still delayed. Loopback is not exempt unless listed there: the dev config
  (dev/postroom.env) lists it, so following the quick start cannot lock its user out.
- A ban refuses every port, 25 included, as docker-mailserver's Fail2ban does: a host
  guessing passwords gets no other service. The refusal names `postroom ban del ADDRESS`
  (security/limits.py), the way to lift it before AUTH_BAN_TIME runs out.
- Bans and the failures that lead to them are kept in the store, so `postroom ban
  list/del` work while `serve` runs, and nodes sharing a PostgreSQL store share both: an
  attacker spreading guesses over several nodes is banned after the same number of
  failures as on one. Failures older than the window are pruned as new ones arrive, and a
  ban clears its address's failures. Connection limits (security/limits.py) stay per node.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from postroom.clock import Clock, SystemClock
from postroom.config import Config
from postroom.errors import PostroomError
from postroom.security.limits import Network, is_exempt
from postroom.security.peer import current_client
from postroom.store.api import Ban, GuardStore

log = logging.getLogger("postroom.security")

T = TypeVar("T")

MAX_PARALLEL_VERIFICATIONS = min(8, os.cpu_count() or 2)


@dataclass(frozen=True, slots=True)
class BanPolicy:
    max_failures: int = 5  # 0 turns banning off
    find_time: dt.timedelta = dt.timedelta(minutes=10)
    ban_time: dt.timedelta = dt.timedelta(hours=1)
    failure_delay: float = 2.0  # seconds before a failure is answered
    ignore_networks: tuple[Network, ...] = ()  # AUTH_BAN_IGNORE_NETWORKS: never banned

    @property
    def is_enabled(self) -> bool:
        return self.max_failures > 0


class AuthGuard:
    def __init__(self, store: GuardStore, policy: BanPolicy, exempt: Sequence[Network] = (),
                 clock: Clock | None = None) -> None:
        self.policy = policy
        self._store = store
        self._exempt = (*exempt, *policy.ignore_networks)
        self._clock = clock or SystemClock()
        self._turns: dict[str, tuple[asyncio.Lock, int]] = {}
        self._verifying = asyncio.Semaphore(MAX_PARALLEL_VERIFICATIONS)

    def hashing_slot(self) -> asyncio.Semaphore:
        """Hold this around each password hash computation (see the module docstring)."""
        return self._verifying

    def is_exempt(self, key: str) -> bool:
        return is_exempt(key, self._exempt)

    async def is_banned(self, key: str) -> bool:
        """Is a ban on `key` in force? Bans made by hand (`postroom ban add`) hold even
        when automatic banning is off."""
        if self.is_exempt(key):
            return False
        try:
            return await self._store.get_ban(key, self._clock.now()) is not None
        except PostroomError as error:
            # The store is unreachable (TryLater): logins cannot be checked either, so
            # letting the client on to the protocol's own temporary failure is safe.
            log.warning("client=%s ban check failed: %s", key, error)
            return False

    async def guarded(self, verify: Callable[[], Awaitable[T | None]]) -> T | None:
        """Run one authentication attempt for the current connection's client: None
        without calling `verify` when the client is banned, else `verify`'s result, a
        failure (None) counted and answered late."""
        key = current_client()
        if key is None:  # not from a connection (CLI, tests): nothing to guard
            return await verify()
        async with self._turn(key):
            if await self.is_banned(key):
                log.info("client=%s authentication refused: banned", key)
                await self._penalise()
                return None
            result = await verify()
            if result is None:
                await self.record_failure(key)
                await self._penalise()
            return result

    async def record_failure(self, key: str) -> bool:
        """Count one failure (in the store, with every node's); True when it got `key`
        banned. Failures more than `find_time` old no longer count."""
        if not self.policy.is_enabled or self.is_exempt(key):
            return False
        now = self._clock.now()
        try:
            failures = await self._store.record_auth_failure(key, now,
                                                             now - self.policy.find_time)
            if failures < self.policy.max_failures:
                return False
            await self.ban(key, now, failures, "authentication failures")
            await self._store.clear_auth_failures(key)  # a new count after the ban
        except PostroomError as error:
            # The store is unreachable (TryLater): the failure is still answered late;
            # logins cannot succeed meanwhile either.
            log.warning("client=%s failure not counted: %s", key, error)
            return False
        return True

    async def ban(self, key: str, now: dt.datetime, failures: int, reason: str) -> Ban:
        ban = Ban(key, now, now + self.policy.ban_time, failures, reason)
        await self._store.add_ban(ban)
        log.warning("client=%s banned until %s after %d %s", key,
                    ban.expires.isoformat(timespec="seconds"), failures, reason)
        return ban

    async def failures_of(self, key: str) -> int:
        """Failures of `key` still counting towards a ban, on every node."""
        now = self._clock.now()
        return await self._store.count_auth_failures(key, now - self.policy.find_time)

    async def _penalise(self) -> None:
        if self.policy.failure_delay > 0:
            await asyncio.sleep(self.policy.failure_delay)

    def _turn(self, key: str) -> _Turn:
        return _Turn(self._turns, key)


class _Turn:
    """One attempt at a time per client: a lock per key, dropped when nobody holds or
    waits for it, so the table is only as big as the set of clients trying right now."""

    def __init__(self, turns: dict[str, tuple[asyncio.Lock, int]], key: str) -> None:
        self._turns = turns
        self._key = key

    async def __aenter__(self) -> None:
        lock, users = self._turns.get(self._key, (asyncio.Lock(), 0))
        self._turns[self._key] = (lock, users + 1)
        try:
            await lock.acquire()
        except BaseException:
            self._leave()
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._turns[self._key][0].release()
        self._leave()

    def _leave(self) -> None:
        lock, users = self._turns[self._key]
        if users <= 1:
            del self._turns[self._key]
        else:
            self._turns[self._key] = (lock, users - 1)


def ban_policy(config: Config) -> BanPolicy:
    return BanPolicy(config.auth_ban_max_failures,
                     dt.timedelta(seconds=config.auth_ban_find_time),
                     dt.timedelta(seconds=config.auth_ban_time), config.auth_failure_delay,
                     tuple(config.ban_ignore_networks))
