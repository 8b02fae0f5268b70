"""`postroom email app-password list|add|revoke` and `postroom email 2fa-off` (issue 21)
as an admin runs them: the printed password opens the account until it is revoked."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from postroom.accounts.service import AccountService
from postroom.accounts.totp import TwoFactor
from postroom.config import load_config
from postroom.store import open_store
from postroom.store.changes import ChangeFeed

USER = "eve@example.com"


@pytest.fixture
def env_file(tmp_path: Path) -> Path:
    path = tmp_path / "postroom.env"
    path.write_text(f"DATA_DIR={tmp_path / 'data'}\nOVERRIDE_HOSTNAME=mail.example.test\n")
    return path


def postroom(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "postroom", "--config", str(env_file), *args],
                          capture_output=True, text=True, timeout=60)


def can_log_in(env_file: Path, password: str) -> bool:
    async def check() -> bool:
        store, _ = await open_store(load_config(env_file).config, ChangeFeed())
        try:
            return await AccountService(store).authenticate(USER, password) is not None
        finally:
            await store.close()
    return asyncio.run(check())


def test_add_list_revoke(env_file: Path) -> None:
    assert postroom(env_file, "email", "add", USER, "main pw").returncode == 0
    added = postroom(env_file, "email", "app-password", "add", USER, "Phone")
    assert added.returncode == 0, added.stderr
    password = added.stdout.strip()
    assert can_log_in(env_file, password)
    listed = postroom(env_file, "email", "app-password", "list", USER)
    # A login outside `serve` (no login history) leaves "last used" empty.
    assert listed.stdout.split()[:1] == ["Phone"] and "never" in listed.stdout
    again = postroom(env_file, "email", "app-password", "add", USER, "Phone")
    assert again.returncode != 0 and "already" in again.stderr
    missing = postroom(env_file, "email", "app-password", "revoke", USER, "Tablet")
    assert missing.returncode != 0 and "no app password named" in missing.stderr
    assert postroom(env_file, "email", "app-password", "revoke", USER, "Phone").returncode == 0
    assert not can_log_in(env_file, password)
    assert can_log_in(env_file, "main pw")
    unknown = postroom(env_file, "email", "app-password", "list", "nobody@example.com")
    assert unknown.returncode != 0 and "no account" in unknown.stderr


def test_2fa_off(env_file: Path) -> None:
    assert postroom(env_file, "email", "add", USER, "main pw").returncode == 0

    async def enrol() -> int:
        store, _ = await open_store(load_config(env_file).config, ChangeFeed())
        try:
            account = await store.get_account(USER)
            assert account is not None
            factor = TwoFactor(store)
            await factor.begin(account.id)
            assert await store.confirm_totp(account.id, 1)
            return int(await factor.is_enabled(account.id))
        finally:
            await store.close()

    assert asyncio.run(enrol()) == 1
    done = postroom(env_file, "email", "2fa-off", USER, "--yes")
    assert done.returncode == 0, done.stderr

    async def enabled() -> bool:
        store, _ = await open_store(load_config(env_file).config, ChangeFeed())
        try:
            account = await store.get_account(USER)
            assert account is not None
            return await TwoFactor(store).is_enabled(account.id)
        finally:
            await store.close()

    assert not asyncio.run(enabled())
