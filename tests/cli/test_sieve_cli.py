"""`postroom sieve …` as a user runs it (subprocess, real config)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.sieve.corpus import PLAIN


@pytest.fixture
def env_file(tmp_path: Path) -> Path:
    path = tmp_path / "postroom.env"
    path.write_text(f"DATA_DIR={tmp_path / 'data'}\nOVERRIDE_HOSTNAME=mail.example.test\n"
                    "SIEVE_MAX_SCRIPTS=2\n")  # fmt: skip
    return path


def postroom(env_file: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "postroom", "--config", str(env_file), *args],
                          input=stdin, capture_output=True, text=True, timeout=60)


def test_scripts_lifecycle(env_file: Path, tmp_path: Path) -> None:
    assert postroom(env_file, "email", "add", "user@example.com", "pw").returncode == 0
    script = tmp_path / "main.sieve"
    script.write_text('require "fileinto";\nfileinto "Lists";\n')
    put = postroom(env_file, "sieve", "put", "user@example.com", "main", str(script),
                   "--activate")  # fmt: skip
    assert put.returncode == 0, put.stderr
    assert postroom(env_file, "sieve", "put", "user@example.com", "spare", "-",
                    stdin="keep;\n").returncode == 0  # fmt: skip
    listed = postroom(env_file, "sieve", "list", "user@example.com").stdout
    assert [line.split("\t") for line in listed.splitlines()] == [
        ["main", "active", "38"], ["spare", "", "6"]]
    third = postroom(env_file, "sieve", "put", "user@example.com", "third", "-",
                     stdin="keep;\n")  # fmt: skip
    assert third.returncode != 0 and "at most 2 scripts" in third.stderr
    got = postroom(env_file, "sieve", "get", "user@example.com", "main")
    assert got.stdout == script.read_text()
    refused = postroom(env_file, "sieve", "del", "user@example.com", "main")
    assert refused.returncode != 0 and "deactivate it first" in refused.stderr
    assert postroom(env_file, "sieve", "deactivate", "user@example.com").returncode == 0
    assert postroom(env_file, "sieve", "del", "user@example.com", "main").returncode == 0
    assert postroom(env_file, "sieve", "check", "user@example.com", "spare").stdout == "valid\n"


def test_a_broken_script_is_refused_with_its_position(env_file: Path, tmp_path: Path) -> None:
    assert postroom(env_file, "email", "add", "user@example.com", "pw").returncode == 0
    broken = tmp_path / "broken.sieve"
    broken.write_text('require "fileinto";\nfileinto "x"\n')
    checked = postroom(env_file, "sieve", "check", str(broken))
    assert checked.returncode == 1
    assert "line 3, column 1: error: expected ';' or '{'" in checked.stderr
    put = postroom(env_file, "sieve", "put", "user@example.com", "b", str(broken))
    assert put.returncode == 1 and "line 3, column 1" in put.stderr
    missing = postroom(env_file, "sieve", "list", "nobody@example.com")
    assert missing.returncode == 1 and "no account nobody@example.com" in missing.stderr


def test_global_scripts(env_file: Path, tmp_path: Path) -> None:
    script = tmp_path / "before.sieve"
    script.write_text('require "fileinto";\nif header :contains "subject" "SPAM" '
                      '{ fileinto "Junk"; }\n')  # fmt: skip
    assert postroom(env_file, "sieve", "global", "put", "before", str(script)).returncode == 0
    assert postroom(env_file, "sieve", "global", "list").stdout.startswith("before\t")
    assert postroom(env_file, "sieve", "global", "del", "before").returncode == 0
    assert postroom(env_file, "sieve", "global", "del", "before").returncode == 1


def test_sieve_test_prints_the_actions(env_file: Path, tmp_path: Path) -> None:
    script = tmp_path / "t.sieve"
    script.write_text('require ["fileinto", "variables", "imap4flags"];\n'
                      'if header :matches "subject" "[*] *" {\n'
                      '  fileinto :flags "\\\\Seen" "lists.${1}";\n}\n'
                      'redirect "copy@example.net";\n')  # fmt: skip
    message = tmp_path / "m.eml"
    message.write_bytes(PLAIN)
    tested = postroom(env_file, "sieve", "test", str(script), str(message))
    assert tested.returncode == 0, tested.stderr
    assert tested.stdout.splitlines() == [
        "fileinto: store message in lists.acme-users + flags \\Seen",
        "redirect: send to copy@example.net",
    ]
