"""Issue 24's "done when": README's quick start, step by step, on the real dev config.

`postroom --config dev/postroom.env` exactly as README says, with only what a test must
change given through the environment (which overrides the file's keys): every port 0 so
instances run side by side, DATA_DIR in a temp folder, and DNS_NAMESERVERS pointing at a
local test DNS server so SPF/DMARC (on, as in the dev config) ask nothing outside this
machine. The user types a wrong password five times over POP3 and can still send and read
mail: the dev config never bans loopback.
"""

from __future__ import annotations

import poplib
import shutil
import smtplib
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.dnsserver import DnsTestServer
from tests.support.server import ServeProcess

DEV_CONFIG = Path(__file__).resolve().parents[2] / "dev" / "postroom.env"
ADMIN, PASSWORD = "admin@example.com", "a password typed twice"
PORT_KEYS = ("SMTP_PORT", "SUBMISSION_PORT", "SUBMISSIONS_PORT", "IMAP_PORT", "IMAPS_PORT",
             "POP3_PORT", "POP3S_PORT", "MTA_STS_PORT")  # MTA_STS_PORT=0: no listener


@pytest.fixture
def dev_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    with DnsTestServer() as dns:
        yield {"DATA_DIR": str(tmp_path / "data"), "DNS_NAMESERVERS": dns.address,
               "STORAGE": "sqlite", **{key: "0" for key in PORT_KEYS}}


def cli(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "postroom", "--config", str(DEV_CONFIG), *args],
        input=stdin, capture_output=True, text=True, timeout=60, env={**os.environ, **env})


def pop3_login(port: int, password: str) -> poplib.POP3:
    pop = poplib.POP3("127.0.0.1", port, timeout=10)
    pop.stls(ssl._create_unverified_context())
    pop.user(ADMIN)
    pop.pass_(password)
    return pop


def test_readme_quick_start_survives_five_wrong_passwords(dev_env: dict[str, str]) -> None:
    added = cli(dev_env, "email", "add", ADMIN, stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    with ServeProcess(DEV_CONFIG, extra_env=dev_env) as server:
        smtp_port, pop3_port = server.ports["smtp"], server.ports["pop3"]
        for _ in range(5):  # README's snippet with its placeholder password, five times
            with pytest.raises(poplib.error_proto):
                pop3_login(pop3_port, "your password")
        if shutil.which("swaks"):  # README's own client
            swaks = subprocess.run(
                ["swaks", "--server", f"127.0.0.1:{smtp_port}", "--to", ADMIN,
                 "--from", "someone@example.org"], capture_output=True, text=True, timeout=60)
            assert swaks.returncode == 0, swaks.stdout + swaks.stderr
        else:
            with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as smtp:
                smtp.sendmail("someone@example.org", [ADMIN],
                              b"From: someone@example.org\r\nSubject: test\r\n\r\nhello\r\n")
        pop = pop3_login(pop3_port, PASSWORD)
        count, _ = pop.stat()
        pop.quit()
    assert count == 1
