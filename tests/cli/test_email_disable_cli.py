"""`postroom email disable|enable` (issue 21, decision 0054) as a user runs them: the
flag is what the server's logins read, and each change is in `postroom audit`."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from postroom.accounts.service import AccountService
from postroom.config import load_config
from postroom.store import open_store
from postroom.store.changes import ChangeFeed


@pytest.fixture
def env_file(tmp_path: Path) -> Path:
    path = tmp_path / "postroom.env"
    path.write_text(f"DATA_DIR={tmp_path / 'data'}\nOVERRIDE_HOSTNAME=mail.example.test\n")
    return path


def postroom(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "postroom", "--config", str(env_file), *args],
                          capture_output=True, text=True, timeout=60)


def can_log_in(env_file: Path, address: str, password: str) -> bool:
    async def check() -> bool:
        store, _ = await open_store(load_config(env_file).config, ChangeFeed())
        try:
            return await AccountService(store).authenticate(address, password) is not None
        finally:
            await store.close()
    return asyncio.run(check())


def test_disable_refuses_logins_until_enabled(env_file: Path) -> None:
    assert postroom(env_file, "email", "add", "eve@example.com", "pw one").returncode == 0
    assert can_log_in(env_file, "eve@example.com", "pw one")
    disabled = postroom(env_file, "email", "disable", "Eve@Example.com")
    assert disabled.returncode == 0, disabled.stderr
    assert not can_log_in(env_file, "eve@example.com", "pw one")
    assert not can_log_in(env_file, "eve@example.com", "wrong")
    assert postroom(env_file, "email", "enable", "eve@example.com").returncode == 0
    assert can_log_in(env_file, "eve@example.com", "pw one")
    audit = postroom(env_file, "audit").stdout
    assert "account.disable" in audit and "account.enable" in audit


def test_disabling_nobody_is_one_clear_line(env_file: Path) -> None:
    result = postroom(env_file, "email", "disable", "nobody@example.com")
    assert result.returncode == 1
    assert "no account nobody@example.com" in result.stderr
    assert "Traceback" not in result.stderr
