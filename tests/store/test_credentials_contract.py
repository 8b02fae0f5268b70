"""Contract tests for CredentialStore (issue 21), on every backend: app passwords by tag,
TOTP enrolment and its replay guard, one-time recovery codes, capped login history."""

from __future__ import annotations

import datetime as dt

from postroom.store.api import Store
from postroom.store.credentials_api import LoginRecord

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
MINUTE = dt.timedelta(minutes=1)


async def _account(store: Store, address: str = "self@example.com") -> int:
    return (await store.create_account(address, "x")).id


async def test_app_passwords_are_named_per_account_and_found_by_tag(store: Store) -> None:
    account = await _account(store)
    other = await _account(store, "other@example.com")
    phone = await store.add_app_password(account, "phone", "abcd", "hash1", NOW)
    assert phone is not None and phone.name == "phone" and phone.last_used is None
    assert await store.add_app_password(account, "phone", "wxyz", "hash2", NOW) is None
    assert await store.add_app_password(other, "phone", "abcd", "hash3", NOW) is not None
    await store.add_app_password(account, "laptop", "efgh", "hash4", NOW)
    assert [p.name for p in await store.list_app_passwords(account)] == ["laptop", "phone"]
    tagged = await store.app_passwords_tagged(account, "abcd")
    assert [(p.id, p.password_hash) for p in tagged] == [(phone.id, "hash1")]
    assert not await store.delete_app_password(other, phone.id)  # not theirs
    assert await store.delete_app_password(account, phone.id)
    assert await store.app_passwords_tagged(account, "abcd") == []


async def test_totp_confirmation_and_replayed_steps(store: Store) -> None:
    account = await _account(store)
    assert await store.totp_state(account) is None
    await store.put_totp_secret(account, "SECRET", NOW)
    state = await store.totp_state(account)
    assert state is not None and not state.is_confirmed
    assert not await store.claim_totp_step(account, 100)  # not in force yet
    assert await store.confirm_totp(account, 100)
    assert not await store.confirm_totp(account, 101)  # once
    assert not await store.claim_totp_step(account, 100)  # the confirming code's step
    assert await store.claim_totp_step(account, 101)
    assert not await store.claim_totp_step(account, 101)  # replay
    assert not await store.claim_totp_step(account, 99)
    await store.put_recovery_codes(account, ["h1", "h2"])
    assert await store.delete_totp(account)
    assert await store.totp_state(account) is None
    assert await store.unused_recovery_codes(account) == []


async def test_recovery_codes_are_spent_once(store: Store) -> None:
    account = await _account(store)
    await store.put_recovery_codes(account, ["h1", "h2"])
    codes = await store.unused_recovery_codes(account)
    assert [code_hash for _, code_hash in codes] == ["h1", "h2"]
    first = codes[0][0]
    assert await store.spend_recovery_code(account, first, NOW)
    assert not await store.spend_recovery_code(account, first, NOW)
    assert [code_hash for _, code_hash in await store.unused_recovery_codes(account)] == ["h2"]
    await store.put_recovery_codes(account, ["h3"])  # new codes replace the old
    assert [code_hash for _, code_hash in await store.unused_recovery_codes(account)] == ["h3"]


async def test_login_history_is_capped_newest_first(store: Store) -> None:
    account = await _account(store)
    other = await _account(store, "other@example.com")
    password = await store.add_app_password(account, "phone", "abcd", "hash", NOW)
    assert password is not None
    logins = [LoginRecord(account, NOW + i * MINUTE, "imaps", "192.0.2.1", f"n{i}")
              for i in range(5)]
    await store.record_logins(logins, keep=3, app_passwords_used=[(password.id, NOW)])
    await store.record_logins([LoginRecord(other, NOW, "web", "", "password")], keep=3)
    recent = await store.recent_logins(account, 10)
    assert [login.credential for login in recent] == ["n4", "n3", "n2"]
    assert recent[0].at == NOW + 4 * MINUTE and recent[0].protocol == "imaps"
    assert len(await store.recent_logins(other, 10)) == 1
    (used,) = await store.list_app_passwords(account)
    assert used.last_used == NOW


async def test_logins_of_a_deleted_account_are_dropped(store: Store) -> None:
    account = await _account(store)
    await store.delete_account("self@example.com")
    await store.record_logins([LoginRecord(account, NOW, "imap", "", "password")], keep=3)
    assert await store.recent_logins(account, 10) == []
