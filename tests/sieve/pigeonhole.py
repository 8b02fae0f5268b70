"""Running Debian's Pigeonhole `sieve-test` (package dovecot-sieve) on a script and a
message, and reading its action list in the corpus's normalised form (corpus.py).

`sieve-test` refuses to run as root without a mail user, so it runs as `nobody` when we
are root, with a minimal Dovecot configuration of its own in a temporary directory that
enables the extensions Debian leaves off (editheader, vacation-seconds, duplicate,
special-use). No daemon is started: sieve-test is a command-line tool.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

SIEVE_TEST = shutil.which("sieve-test")
CONFIG = """protocols =
mail_location = maildir:{home}/mail
plugin {{
  sieve_extensions = +editheader +vacation-seconds +duplicate +special-use +mailbox
}}
"""


def available() -> bool:
    return SIEVE_TEST is not None


def run_sieve_test(script: str, message: bytes, *, sender: str, recipient: str
                   ) -> tuple[str, ...]:  # fmt: skip
    """Pigeonhole's actions for `script` on `message`, normalised; ("compile-error",)
    when it refuses the script."""
    # A folder of its own under /tmp: pytest's tmp_path sits below directories only
    # root may enter, and sieve-test runs as nobody.
    folder = Path(tempfile.mkdtemp(prefix="postroom-sieve-test-"))
    try:
        return _run(folder, script, message, sender=sender, recipient=recipient)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _run(folder: Path, script: str, message: bytes, *, sender: str, recipient: str
         ) -> tuple[str, ...]:  # fmt: skip
    assert SIEVE_TEST is not None
    (folder / "dovecot.conf").write_text(CONFIG.format(home=folder))
    (folder / "script.sieve").write_text(script, encoding="utf-8")
    (folder / "message.eml").write_bytes(message)
    command = [SIEVE_TEST, "-c", str(folder / "dovecot.conf"), "-a", recipient,
               "-r", recipient, "-f", sender, str(folder / "script.sieve"),
               str(folder / "message.eml")]  # fmt: skip
    if os.geteuid() == 0:
        os.chmod(folder, 0o777)
        for path in folder.iterdir():
            os.chmod(path, 0o777)
        command = ["runuser", "-u", "nobody", "--", *command]
    env = {"HOME": str(folder), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    completed = subprocess.run(command, capture_output=True, text=True, timeout=30, env=env,
                               cwd=folder, check=False)  # fmt: skip
    return parse_output(completed.stdout + completed.stderr)


_STORE = re.compile(r"^ \* store message in folder: (.*)$")
_FLAGS = re.compile(r"^\s+\+ add IMAP flags: (.*)$")


def parse_output(text: str) -> tuple[str, ...]:
    if "failed to compile" in text:
        return ("compile-error",)
    if "Fatal:" in text:
        return ("fatal", text.strip())
    actions: list[str] = []
    failed = "final result: failed" in text
    for line in text.splitlines():
        store = _STORE.match(line)
        flags = _FLAGS.match(line)
        if store:
            name = store.group(1)
            actions.append("keep" if name == "INBOX" else f"fileinto:{name}")
        elif flags and actions:
            listed = " ".join(sorted(flag.lower() for flag in flags.group(1).split()))
            actions[-1] += f"[{listed}]"
        elif line.startswith(" * redirect message to: "):
            actions.append("redirect:" + line.split(": ", 1)[1].strip().strip("<>"))
        elif line.startswith(" * discard"):
            actions.append("discard")
        elif line.startswith(" * reject message"):
            actions.append("reject")
        elif line.startswith(" * send vacation message"):
            actions.append("vacation")
    if failed:
        return ("error", "keep")
    merged: list[str] = []
    for action in actions:  # "keep" listed under performed actions and implicit keep
        if action not in merged:
            merged.append(action)
    return tuple(merged)
