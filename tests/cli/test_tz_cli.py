"""Issue 24: the command line shows stored (UTC) times in TZ's zone, with the offset."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
from pathlib import Path


def postroom(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "postroom", "--config", str(env_file), *args],
                          capture_output=True, text=True, timeout=120)


def test_ban_times_are_shown_in_tz(tmp_path: Path) -> None:
    env = tmp_path / "postroom.env"
    env.write_text(f"DATA_DIR={tmp_path / 'data'}\nOVERRIDE_HOSTNAME=mail.example.test\n"
                   "TZ=Asia/Shanghai\n")
    added = postroom(env, "ban", "add", "192.0.2.1", "--time", "1h")
    assert added.returncode == 0, added.stderr
    listed = postroom(env, "ban", "list")
    assert listed.returncode == 0, listed.stderr
    for text in (added.stdout, listed.stdout):
        match = re.search(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\+08:00)", text)
        assert match, text
        until = dt.datetime.fromisoformat(match.group(1))
        expected = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        assert abs(until - expected) < dt.timedelta(minutes=5)
