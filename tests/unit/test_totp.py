"""The TOTP second factor (accounts/totp.py, issue 21) on a real store with a manual
clock: RFC 6238 codes with one step of drift, each step accepted once, an enrolment
confirmed only by a code of its secret, recovery codes spent once, and the per-account
budget of wrong codes."""

from __future__ import annotations

import datetime as dt

import pyotp
import pytest

from postroom.accounts import totp as totp_module
from postroom.accounts.totp import TwoFactor
from postroom.clock import ManualClock
from postroom.errors import Refused
from postroom.runtime import Runtime

START = dt.datetime(2026, 12, 7, 12, 0, 10, tzinfo=dt.UTC)


async def enrolled(runtime: Runtime, clock: ManualClock) -> tuple[TwoFactor, int, pyotp.TOTP,
                                                                   list[str]]:
    account = await runtime.accounts.add_account("me@example.test", "pw")
    factor = TwoFactor(runtime.store, clock=clock)
    secret = await factor.begin(account.id)
    assert not await factor.is_enabled(account.id)
    totp = pyotp.TOTP(secret)
    with pytest.raises(Refused):
        await factor.confirm(account.id, pyotp.TOTP(pyotp.random_base32()).at(clock.now()))
    codes = await factor.confirm(account.id, totp.at(clock.now()))
    assert await factor.is_enabled(account.id) and len(codes) == 10
    return factor, account.id, totp, codes


async def test_codes_work_once_within_the_drift_window(runtime: Runtime) -> None:
    clock = ManualClock(START)
    factor, account, totp, _ = await enrolled(runtime, clock)
    step = totp.timecode(clock.now())
    assert not await factor.verify(account, totp.generate_otp(step))  # used to confirm
    assert not await factor.verify(account, totp.generate_otp(step + 2))  # too far ahead
    assert await factor.verify(account, totp.generate_otp(step + 1))  # drift: one step
    assert not await factor.verify(account, totp.generate_otp(step + 1))  # replay
    clock.advance(60)
    assert not await factor.verify(account, totp.generate_otp(step + 1))  # older now
    assert await factor.verify(account, totp.at(clock.now()))
    for junk in ("", "12345", "1234567", "abcdef", "x" * 10_000):
        assert not await factor.verify(account, junk)


async def test_recovery_codes_are_spent_once(runtime: Runtime) -> None:
    clock = ManualClock(START)
    factor, account, _, codes = await enrolled(runtime, clock)
    assert await factor.verify(account, codes[3].upper().replace("-", " "))
    assert not await factor.verify(account, codes[3])
    assert await factor.recovery_codes_left(account) == 9
    fresh = await factor.new_recovery_codes(account)
    assert not await factor.verify(account, codes[4])  # replaced
    assert await factor.verify(account, fresh[0])


async def test_wrong_codes_exhaust_the_accounts_budget(runtime: Runtime) -> None:
    clock = ManualClock(START)
    factor, account, totp, _ = await enrolled(runtime, clock)
    for _ in range(totp_module.MAX_FAILURES_PER_ACCOUNT):
        assert not await factor.verify(account, "000000" if totp.at(clock.now()) != "000000"
                                       else "111111")
    clock.advance(30)
    assert not await factor.verify(account, totp.at(clock.now()))  # right, but throttled
    clock.advance(totp_module.FAILURE_WINDOW)
    assert await factor.verify(account, totp.at(clock.now()))


async def test_turning_off_forgets_secret_and_codes(runtime: Runtime) -> None:
    clock = ManualClock(START)
    factor, account, totp, codes = await enrolled(runtime, clock)
    await factor.disable(account)
    assert not await factor.is_enabled(account)
    clock.advance(30)
    assert not await factor.verify(account, totp.at(clock.now()))
    assert not await factor.verify(account, codes[0])
