"""`postroom email …` and `postroom alias …` as a user runs them (subprocess, real config)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture
def env_file(tmp_path: Path) -> Path:
    path = tmp_path / "postroom.env"
    path.write_text(f"DATA_DIR={tmp_path / 'data'}\nOVERRIDE_HOSTNAME=mail.example.test\n")
    return path


def postroom(env_file: Path, *args: str, stdin: str = "",
             cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "postroom", "--config", str(env_file), *args],
                          input=stdin, capture_output=True, text=True, timeout=60, cwd=cwd)


def test_email_lifecycle(env_file: Path) -> None:
    added = postroom(env_file, "email", "add", "Admin@Example.COM", "s3cret")
    assert added.returncode == 0, added.stderr
    assert "added admin@example.com" in added.stdout
    # password from stdin when not given (what a script piping it in does)
    assert postroom(env_file, "email", "add", "bob@example.com", stdin="pw\n").returncode == 0
    listing = postroom(env_file, "email", "list")
    assert listing.returncode == 0
    rows = [line.split("\t") for line in listing.stdout.splitlines()]
    # address, messages, size, quota (POSTFIX_MAILBOX_SIZE_LIMIT's 20 GB), its use
    assert rows == [["admin@example.com", "0", "0 B", "18.6 GiB", "0%"],
                    ["bob@example.com", "0", "0 B", "18.6 GiB", "0%"]]
    assert postroom(env_file, "email", "update", "bob@example.com", "new").returncode == 0
    refused = postroom(env_file, "email", "del", "bob@example.com", stdin="n\n")
    assert refused.returncode != 0
    assert postroom(env_file, "email", "del", "--yes", "bob@example.com").returncode == 0
    assert "bob@" not in postroom(env_file, "email", "list").stdout


@pytest.mark.parametrize(("args", "message"), [
    (("email", "add", "not-an-address", "pw"), "not an address"),
    (("email", "add", "a%b@example.com", "pw"), "not allowed"),
    (("email", "add", "user@-bad-.com", "pw"), "invalid domain"),
    (("email", "update", "nobody@example.com", "pw"), "no account nobody@example.com"),
    (("email", "del", "--yes", "nobody@example.com"), "no account"),
    (("alias", "del", "nobody@example.com"), "no alias"),
])
def test_errors_are_one_clear_line(env_file: Path, args: tuple[str, ...], message: str) -> None:
    result = postroom(env_file, *args)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_duplicate_account_is_refused(env_file: Path) -> None:
    assert postroom(env_file, "email", "add", "a@example.com", "pw").returncode == 0
    again = postroom(env_file, "email", "add", "A@example.com", "pw")
    assert again.returncode == 1 and "already exists" in again.stderr


def test_alias_lifecycle(env_file: Path) -> None:
    assert postroom(env_file, "email", "add", "admin@example.com", "pw").returncode == 0
    assert postroom(env_file, "alias", "add", "info@example.com", "admin@example.com"
                    ).returncode == 0
    assert postroom(env_file, "alias", "add", "info@example.com", "other@example.org"
                    ).returncode == 0
    assert postroom(env_file, "alias", "add", "@example.com", "admin@example.com"
                    ).returncode == 0
    duplicate = postroom(env_file, "alias", "add", "info@example.com", "admin@example.com")
    assert duplicate.returncode == 1 and "already exists" in duplicate.stderr
    shadow = postroom(env_file, "alias", "add", "admin@example.com", "other@example.org")
    assert shadow.returncode == 1 and "is an account" in shadow.stderr
    listing = postroom(env_file, "alias", "list").stdout.splitlines()
    assert sorted(listing) == sorted(["info@example.com\tadmin@example.com",
                                      "info@example.com\tother@example.org",
                                      "@example.com\tadmin@example.com"])
    assert postroom(env_file, "alias", "del", "info@example.com", "other@example.org"
                    ).returncode == 0
    assert postroom(env_file, "alias", "del", "info@example.com").returncode == 0
    assert postroom(env_file, "alias", "list").stdout.splitlines() == [
        "@example.com\tadmin@example.com"]


def test_bad_config_names_the_key(tmp_path: Path) -> None:
    env = tmp_path / "bad.env"
    env.write_text("SMTP_PORT=70000\n")
    result = postroom(env, "email", "list")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "postroom: config: SMTP_PORT: Input should be less than or equal to 65535 "
        "(got '70000')")


def test_config_discovery_uses_postroom_env_in_cwd(tmp_path: Path) -> None:
    (tmp_path / "postroom.env").write_text(f"DATA_DIR={tmp_path / 'cwd-data'}\n")
    result = subprocess.run([sys.executable, "-m", "postroom", "email", "add",
                             "x@example.com", "pw"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "cwd-data" / "postroom.sqlite3").exists()
