"""`postroom quota set|del`, the quota columns of `postroom email list`, DEFAULT_QUOTA for
new accounts, and docker-mailserver's dovecot-quotas.cf imported (issue 17), run as a user
runs them: `python -m postroom` in a subprocess with a real config file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.dms_import.dms_folder import sha512_crypt

ALICE, BOB = "alice@example.com", "bob@example.com"


def env_file(tmp_path: Path, **values: object) -> Path:
    path = tmp_path / "postroom.env"
    lines = [f"DATA_DIR={tmp_path / 'data'}", "OVERRIDE_HOSTNAME=mail.example.test",
             *(f"{key}={value}" for key, value in values.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def postroom(env: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "postroom", "--config", str(env), *args],
                          capture_output=True, text=True, timeout=60)


def listing(env: Path) -> dict[str, list[str]]:
    result = postroom(env, "email", "list")
    assert result.returncode == 0, result.stderr
    return {row[0]: row[1:] for row in (line.split("\t") for line in result.stdout.splitlines())}


def test_set_del_and_email_list(tmp_path: Path) -> None:
    env = env_file(tmp_path, DEFAULT_QUOTA="1G")
    assert postroom(env, "email", "add", ALICE, "pw-alice-1").returncode == 0
    assert postroom(env, "email", "add", BOB, "pw-bob-1").returncode == 0
    # New accounts get DEFAULT_QUOTA (docker-mailserver's `( 0 / 1G ) [0%]`).
    assert listing(env)[ALICE] == ["0", "0 B", "1.0 GiB", "0%"]
    result = postroom(env, "quota", "set", ALICE, "2G", "--messages", "1000")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"quota of {ALICE}: 2.0 GiB, 1000 messages"
    assert listing(env)[ALICE] == ["0", "0 B", "2.0 GiB, 1000 messages", "0%"]
    assert listing(env)[BOB] == ["0", "0 B", "1.0 GiB", "0%"]
    assert postroom(env, "quota", "del", ALICE).returncode == 0
    assert listing(env)[ALICE] == ["0", "0 B", "1.0 GiB", "0%"]
    assert postroom(env, "quota", "set", BOB, "0").returncode == 0  # none of its own: the cap
    assert listing(env)[BOB][2] == "18.6 GiB"  # POSTFIX_MAILBOX_SIZE_LIMIT's 20 GB


def test_errors_are_one_clear_line(tmp_path: Path) -> None:
    env = env_file(tmp_path, POSTFIX_MAILBOX_SIZE_LIMIT=1024**3)
    assert postroom(env, "email", "add", ALICE, "pw-alice-1").returncode == 0
    for args, message in [
        (("quota", "set", ALICE, "lots"), "is not a size"),
        (("quota", "set", "nobody@example.com", "1G"), "no account nobody@example.com"),
        (("quota", "set", ALICE, "2G"), "above POSTFIX_MAILBOX_SIZE_LIMIT"),
        (("quota", "del", "nobody@example.com"), "no account"),
    ]:
        result = postroom(env, *args)
        assert result.returncode == 1, args
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_quotas_off_in_email_list(tmp_path: Path) -> None:
    env = env_file(tmp_path, ENABLE_QUOTAS=0, POSTFIX_MAILBOX_SIZE_LIMIT=0)
    assert postroom(env, "email", "add", ALICE, "pw-alice-1").returncode == 0
    set_anyway = postroom(env, "quota", "set", ALICE, "1G")
    assert set_anyway.returncode == 0 and "ENABLE_QUOTAS=0" in set_anyway.stderr
    assert listing(env)[ALICE] == ["0", "0 B", "-", "-"]


def dms_folder(root: Path) -> Path:
    config = root / "config"
    config.mkdir(parents=True)
    (config / "postfix-accounts.cf").write_text(
        f"{ALICE}|{{SHA512-CRYPT}}{sha512_crypt('pw-alice-1', 'Ab3dE6gH')}\n"
        f"{BOB}|{{SHA512-CRYPT}}{sha512_crypt('pw-bob-1', 'xYz09876')}\n")
    (config / "dovecot-quotas.cf").write_text(  # `setup quota set` writes these lines
        f"{ALICE}:1K\n{BOB}:500M\nnobody@example.com:1G\nbroken line\n")
    cur = root / "mail-data" / "example.com" / "alice" / "cur"
    cur.mkdir(parents=True)
    for sub in ("new", "tmp"):
        (cur.parent / sub).mkdir()
    body = b"Subject: big\n\n" + b"x" * 2000 + b"\n"
    (cur / "1700000000.M1P1.mailhost,S=2016:2,S").write_bytes(body)
    return root


def test_import_dovecot_quotas(tmp_path: Path) -> None:
    env = env_file(tmp_path)
    source = dms_folder(tmp_path / "dms")
    dry = postroom(env, "import", "docker-mailserver", "--dry-run", str(source))
    assert dry.returncode == 0, dry.stderr
    assert "quotas: 2 new, 0 already set" in dry.stdout
    result = postroom(env, "import", "docker-mailserver", str(source))
    assert result.returncode == 0, result.stderr
    assert "quotas: 2 new, 0 already set" in result.stdout
    assert "config/dovecot-quotas.cf:3: nobody@example.com: no such account" in result.stdout
    assert "config/dovecot-quotas.cf:4:" in result.stdout
    assert "mail-data/example.com/alice: over its quota (1K) after the import" in result.stdout
    rows = listing(env)
    # 2020 bytes in CRLF form, of 1 KiB
    assert rows[ALICE][0] == "1" and rows[ALICE][2:] == ["1.0 KiB", "197%"]
    assert rows[BOB][2:] == ["500.0 MiB", "0%"]
    again = postroom(env, "import", "docker-mailserver", str(source))
    assert "quotas: 0 new, 2 already set" in again.stdout
