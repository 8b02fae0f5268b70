"""SMTP section: Postfix's own `smtp-source` against Postfix and against postroom.

Owns the SMTP cases (message size × concurrent sessions), one timed run of smtp-source
against a server, and counting the recipient's mailbox until every message is there.

Two rates per run, both over the same start time:
- accepted: messages / seconds until smtp-source exited (every 250 received);
- delivered: messages / seconds until the mailbox held them all (counted in the Maildir
  for Postfix, in postroom's DB for postroom; the client's word is not trusted).
smtp-source opens one TCP connection per message (no `-d`), as a stream of MX deliveries
from many senders would; runs of the two servers alternate so drift cancels in the ratio.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

from bench.harness import HOST, tree_cpu_seconds, wait_until

SENDER = "sender@example.org"
CLIENT_NAME = "client.example.org"


@dataclass(frozen=True, slots=True)
class SmtpCase:
    size_bytes: int
    sessions: int
    messages: int

    @property
    def label(self) -> str:
        return f"{self.size_bytes // 1024} KB, {self.sessions} session" + (
            "s" if self.sessions > 1 else "")


@dataclass(frozen=True, slots=True)
class SmtpRun:
    server: str
    case: SmtpCase
    accepted_per_s: float
    delivered_per_s: float
    server_cpu_ms_per_msg: float | None


@dataclass(frozen=True, slots=True)
class SmtpTarget:
    """What smtp_load needs of a server: where to connect and how to count its mailbox."""

    name: str
    port: int
    count: Callable[[str], int]
    pid: Callable[[], int | None]


def cases(quick: bool) -> list[SmtpCase]:
    """Message counts sized so each run takes a second or two on 2 cores (quick), or
    long enough that start-up and the final fsync are noise (full)."""
    sizes = (4 * 1024, 100 * 1024)
    counts = {1: 150, 10: 400, 50: 400} if quick else {1: 300, 10: 1200, 50: 1200}
    return [SmtpCase(size, sessions, counts[sessions])
            for size in sizes for sessions in (1, 10, 50)]


def run_smtp_source(smtp_source: str, target: SmtpTarget, case: SmtpCase,
                    recipient: str, timeout: float = 600) -> SmtpRun:
    before = target.count(recipient)
    pid = target.pid()
    cpu_before = tree_cpu_seconds(pid) if pid else None
    argv = [smtp_source, "-l", str(case.size_bytes), "-m", str(case.messages),
            "-s", str(case.sessions), "-f", SENDER, "-t", recipient, "-M", CLIENT_NAME,
            f"{HOST}:{target.port}"]
    started = time.monotonic()
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                            check=False)
    accepted_at = time.monotonic()
    if result.returncode != 0:
        raise RuntimeError(f"smtp-source against {target.name} failed: "
                           f"{(result.stderr or result.stdout).strip()[-400:]}")
    expected = before + case.messages
    delivered_at = wait_until(lambda: target.count(recipient) >= expected, timeout,
                              f"{case.messages} deliveries on {target.name}", interval=0.01)
    cpu_ms = None
    if cpu_before is not None and pid:
        cpu_ms = (tree_cpu_seconds(pid) - cpu_before) * 1000 / case.messages
    return SmtpRun(
        server=target.name,
        case=case,
        accepted_per_s=case.messages / (accepted_at - started),
        delivered_per_s=case.messages / (max(delivered_at, accepted_at) - started),
        server_cpu_ms_per_msg=cpu_ms,
    )


def run_interleaved(smtp_source: str, reference: SmtpTarget, ours: SmtpTarget,
                    case: SmtpCase, recipient: str, repeats: int,
                    progress: Callable[[str], None]) -> list[SmtpRun]:
    """A B B A A B …: neither server always runs first after the other's load."""
    runs: list[SmtpRun] = []
    for repeat in range(repeats):
        order = (reference, ours) if repeat % 2 == 0 else (ours, reference)
        for target in order:
            outcome = run_smtp_source(smtp_source, target, case, recipient)
            progress(f"  smtp {case.label:<22} {target.name:<9} "
                     f"accepted {outcome.accepted_per_s:7.1f}/s  "
                     f"delivered {outcome.delivered_per_s:7.1f}/s")
            runs.append(outcome)
    return runs
