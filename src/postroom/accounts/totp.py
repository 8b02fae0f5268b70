"""The second factor of the web login (issue 21): TOTP (RFC 6238, with `pyotp`) and
one-time recovery codes.

Owns enrolment (a new secret waits unconfirmed until the user enters a code from it),
checking codes, recovery codes, and turning the factor off.

Decisions and invariants:
- RFC 6238 defaults as every authenticator app takes them: SHA-1, 6 digits, 30-second
  steps (§4, §5.2); one step either side is accepted for clock drift (§6).
- A code is good once: the step it matched is claimed in the store
  (`claim_totp_step`, a conditional UPDATE), so a replayed or older code is refused on
  every node (§5.2: "the verifier MUST NOT accept the second attempt of the same OTP").
- Every check runs through the login guard (security/bans.py): a wrong code counts as a
  failed login of the client, is answered late, and five get it banned, as wrong
  passwords do. Besides, an account takes at most MAX_FAILURES_PER_ACCOUNT wrong codes
  per FAILURE_WINDOW in this process, whatever the clients: guessing 6 digits from many
  addresses gets nowhere either.
- Recovery codes: RECOVERY_CODES codes of 50 random bits, shown once, stored as SHA-256
  (random codes need no slow hash: there is nothing to guess from a dictionary), each
  spent by the conditional UPDATE that marks it used.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import pyotp

from postroom.accounts.apppasswords import ALPHABET
from postroom.clock import Clock, SystemClock
from postroom.errors import Refused
from postroom.store.credentials_api import CredentialStore

if TYPE_CHECKING:
    from postroom.security.bans import AuthGuard

T = TypeVar("T")

RECOVERY_CODES = 10
RECOVERY_LENGTH = 10
DRIFT_STEPS = 1
MAX_FAILURES_PER_ACCOUNT = 10
FAILURE_WINDOW = dt.timedelta(minutes=15)
MAX_CODE_LENGTH = 64  # anything longer is no code of ours: refused before any work


def new_secret() -> str:
    return pyotp.random_base32()  # 160 bits, RFC 4226 §4's recommended length


def provisioning_uri(secret: str, address: str, issuer: str) -> str:
    """The otpauth:// URI authenticator apps read (as a QR code or pasted)."""
    return pyotp.TOTP(secret).provisioning_uri(name=address, issuer_name=issuer)


def _recovery_hash(code: str) -> str:
    text = code.replace("-", "").replace(" ", "").lower()
    return hashlib.sha256(text.encode()).hexdigest()


def _new_recovery_code() -> str:
    raw = "".join(secrets.choice(ALPHABET) for _ in range(RECOVERY_LENGTH))
    return f"{raw[:5]}-{raw[5:]}"


class TwoFactor:
    def __init__(self, store: CredentialStore, guard: AuthGuard | None = None,
                 clock: Clock | None = None) -> None:
        self._store = store
        self._guard = guard
        self._clock = clock or SystemClock()
        self._failures: defaultdict[int, deque[dt.datetime]] = defaultdict(deque)

    async def is_enabled(self, account_id: int) -> bool:
        state = await self._store.totp_state(account_id)
        return state is not None and state.is_confirmed

    async def begin(self, account_id: int) -> str:
        """A new secret waiting for confirmation (the factor in force, if any, goes)."""
        secret = new_secret()
        await self._store.delete_totp(account_id)
        await self._store.put_totp_secret(account_id, secret, self._clock.now())
        return secret

    async def pending_secret(self, account_id: int) -> str | None:
        state = await self._store.totp_state(account_id)
        return state.secret if state is not None and not state.is_confirmed else None

    async def confirm(self, account_id: int, code: str) -> list[str]:
        """Put the waiting secret in force when `code` is one of its codes; the new
        recovery codes (shown once). Refused when the code does not match."""
        state = await self._store.totp_state(account_id)
        if state is None or state.is_confirmed:
            raise Refused("no two-factor enrolment is waiting; start again")
        secret = state.secret

        async def attempt() -> int | None:
            return self._matching_step(secret, code)

        step = await self._guarded(account_id, attempt)
        if step is None or not await self._store.confirm_totp(account_id, step):
            raise Refused("that code does not match; check the device's clock and try again")
        return await self.new_recovery_codes(account_id)

    async def verify(self, account_id: int, code: str) -> bool:
        """True for a current code not used before, or an unused recovery code (spent)."""
        state = await self._store.totp_state(account_id)
        if state is None or not state.is_confirmed:
            return False
        secret = state.secret

        async def attempt() -> bool | None:
            step = self._matching_step(secret, code)
            if step is not None and await self._store.claim_totp_step(account_id, step):
                return True
            return True if await self._spend_recovery(account_id, code) else None

        return bool(await self._guarded(account_id, attempt))

    async def new_recovery_codes(self, account_id: int) -> list[str]:
        codes = [_new_recovery_code() for _ in range(RECOVERY_CODES)]
        await self._store.put_recovery_codes(account_id, [_recovery_hash(c) for c in codes])
        return codes

    async def recovery_codes_left(self, account_id: int) -> int:
        return len(await self._store.unused_recovery_codes(account_id))

    async def disable(self, account_id: int) -> None:
        await self._store.delete_totp(account_id)

    def _matching_step(self, secret: str, code: str) -> int | None:
        digits = code.strip().replace(" ", "")
        if len(digits) != 6 or not digits.isdigit():
            return None
        totp = pyotp.TOTP(secret)
        now = self._clock.now()
        current = totp.timecode(now)
        for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
            if hmac.compare_digest(totp.generate_otp(step), digits):
                return step
        return None

    async def _spend_recovery(self, account_id: int, code: str) -> bool:
        if len(code) > MAX_CODE_LENGTH:
            return False
        wanted = _recovery_hash(code)
        for code_id, code_hash in await self._store.unused_recovery_codes(account_id):
            if hmac.compare_digest(code_hash, wanted):
                return await self._store.spend_recovery_code(account_id, code_id,
                                                             self._clock.now())
        return False

    async def _guarded(self, account_id: int,
                       check: Callable[[], Awaitable[T | None]]) -> T | None:
        """Run `check` (None meaning failure) under the client's guard and this
        account's own failure budget."""
        if self._is_throttled(account_id):
            return None

        async def run() -> T | None:
            result = await check()
            if result is None:
                self._failures[account_id].append(self._clock.now())
            return result

        if self._guard is None:
            return await run()
        return await self._guard.guarded(run)

    def _is_throttled(self, account_id: int) -> bool:
        failures = self._failures[account_id]
        horizon = self._clock.now() - FAILURE_WINDOW
        while failures and failures[0] < horizon:
            failures.popleft()
        if not failures:
            del self._failures[account_id]
            return False
        return len(failures) >= MAX_FAILURES_PER_ACCOUNT

