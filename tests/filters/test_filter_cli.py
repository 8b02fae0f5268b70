"""`postroom filter check|set|list` as a user runs them (subprocess, real config): the
verdict and each symbol's score of a message, offline, like rspamc; per-account
thresholds set from the command line and used by `filter check --account`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from postroom.checks.gtube import GTUBE
from postroom.cli import app

SPAM = b"From: a@remote.example\nSubject: x\n\n" + GTUBE + b"\n"
HAM = b"From: a@remote.example\nSubject: lunch\n\nnoon?\n"


@pytest.fixture
def env_file(tmp_path: Path) -> Path:
    path = tmp_path / "postroom.env"
    path.write_text(f"DATA_DIR={tmp_path / 'data'}\nOVERRIDE_HOSTNAME=mail.example.test\n"
                    "SA_KILL=20\n")
    return path


def postroom(env_file: Path, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    """In process (typer's runner): the verbs' own code, without an interpreter start each."""
    result = CliRunner().invoke(app, ["--config", str(env_file), *args], input=stdin)
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


def test_as_a_user_runs_it(env_file: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "postroom", "--config", str(env_file),
                           "filter", "check", "-"], input=SPAM, capture_output=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().startswith("GTUBE\t1000\t")


def test_check_a_file_and_stdin(env_file: Path, tmp_path: Path) -> None:
    (tmp_path / "spam.eml").write_bytes(SPAM)
    checked = postroom(env_file, "filter", "check", str(tmp_path / "spam.eml"))
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.splitlines() == [
        "GTUBE\t1000\tthe GTUBE test string",
        "score: 1000 (tag 2, tag2 6.31, kill 20)",
        "spam: yes",
        "action: reject (554 5.7.1)"]
    ham = postroom(env_file, "filter", "check", "-", stdin=HAM)
    assert ham.returncode == 0, ham.stderr
    assert ham.stdout.splitlines() == ["score: 0 (tag 2, tag2 6.31, kill 20)", "spam: no",
                                       "action: no action"]
    missing = postroom(env_file, "filter", "check", str(tmp_path / "nothing.eml"))
    assert missing.returncode == 1 and "No such file" in missing.stderr


def test_account_thresholds(env_file: Path) -> None:
    assert postroom(env_file, "email", "add", "user@example.test", "pw").returncode == 0
    refused = postroom(env_file, "filter", "set", "user@example.test", "--tag2", "9",
                       "--tag", "10")
    assert refused.returncode == 1 and "ordered" in refused.stderr
    done = postroom(env_file, "filter", "set", "user@example.test", "--tag2", "500",
                    "--kill", "2000")
    assert done.returncode == 0, done.stderr
    listed = postroom(env_file, "filter", "list")
    assert listed.stdout.splitlines() == ["user@example.test\t-\t500\t2000"]
    checked = postroom(env_file, "filter", "check", "--account", "user@example.test", "-",
                       stdin=SPAM)
    assert checked.returncode == 0, checked.stderr
    assert "score: 1000 (tag 2, tag2 500, kill 2000)" in checked.stdout
    assert "action: spam: file into Junk, subject marked '***SPAM***'" in checked.stdout
    assert postroom(env_file, "filter", "set", "user@example.test", "--clear").returncode == 0
    assert postroom(env_file, "filter", "list").stdout == ""
    unknown = postroom(env_file, "filter", "set", "nobody@example.test", "--kill", "3")
    assert unknown.returncode == 1 and "no account nobody@example.test" in unknown.stderr
