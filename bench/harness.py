"""Shared pieces of the benchmark harness: paths, ports, waiting, statistics.

Owns the layout of bench/work/ (git-ignored scratch space for every server the suite
starts), the fixed high ports on 127.0.0.1, and the summary arithmetic (median, range,
percentiles) every section reports with.

Invariants: every server the suite starts listens on 127.0.0.1 only; nothing here talks
to any other address. Waiting is by polling a condition with a deadline, never a bare
sleep standing in for readiness.
"""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
WORK_DIR = BENCH_DIR / "work"
HOST = "127.0.0.1"
DOMAIN = "bench.test"
PASSWORD = "bench-password-1"


@dataclass(frozen=True, slots=True)
class Ports:
    """High ports per server; chosen away from the dev config (2xxx) and common services."""

    postfix_smtp: int = 32525
    dovecot_imap: int = 32143
    dovecot_imaps: int = 32993
    dovecot_pop3: int = 32110
    dovecot_pop3s: int = 32995
    postroom_smtp: int = 33525
    postroom_submission: int = 33587
    postroom_submissions: int = 33465
    postroom_imap: int = 33143
    postroom_imaps: int = 33993
    postroom_pop3: int = 33110
    postroom_pop3s: int = 33995
    postgres: int = 25432  # the nodes section's throwaway cluster (bench/pg.py)


PORTS = Ports()


def bench_user(index: int) -> str:
    return f"user{index}@{DOMAIN}"


def is_port_open(port: int, host: str = HOST) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def wait_until(condition: Callable[[], bool], timeout: float, what: str,
               interval: float = 0.02) -> float:
    """Poll `condition` until true; returns the time it became true (monotonic)."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def run(argv: Sequence[str], check: bool = True, env: dict[str, str] | None = None,
        input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), capture_output=True, text=True, env=env,
                            input=input_text, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): "
                           f"{result.stderr.strip() or result.stdout.strip()}")
    return result


def raise_nofile_limit(wanted: int) -> int:
    """Raise RLIMIT_NOFILE for this process (and children started afterwards)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    new_hard = hard if hard == resource.RLIM_INFINITY or hard >= wanted else wanted
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, new_hard))
        return wanted
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return int(hard)


def rss_kib(pid: int) -> int:
    """Resident set size of one process (VmRSS), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def tree_rss_kib(pid: int) -> int:
    """RSS of a process and all its descendants (Postfix and Dovecot are many processes)."""
    total = rss_kib(pid)
    with contextlib.suppress(OSError):
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        total += sum(tree_rss_kib(int(child)) for child in children)
    return total


def process_cpu_seconds(pid: int) -> float:
    """user+system CPU of a process and its reaped children, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    # fields[11..14] are utime, stime, cutime, cstime (proc(5), counted after the comm field)
    return sum(int(value) for value in fields[11:15]) / ticks


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a process with its reaped children and its live descendants: PostgreSQL
    runs a backend process per connection. A process gone meanwhile counts as 0."""
    try:
        total = process_cpu_seconds(pid)
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0.0
    return total + sum(tree_cpu_seconds(int(child)) for child in children)


# --- statistics -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Summary:
    median: float
    low: float
    high: float
    count: int

    def render(self, digits: int = 0) -> str:
        if self.count == 0:
            return "n/a"
        if self.count == 1:
            return f"{self.median:.{digits}f}"
        return f"{self.median:.{digits}f} ({self.low:.{digits}f}–{self.high:.{digits}f})"


def summarize(values: Sequence[float]) -> Summary:
    if not values:
        return Summary(0.0, 0.0, 0.0, 0)
    return Summary(statistics.median(values), min(values), max(values), len(values))


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (fraction in 0..1); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


def paired_ratios(ours: Sequence[float], theirs: Sequence[float]) -> Summary:
    """Ratios of interleaved runs taken pairwise (run i of each side ran back to back),
    so the machine's drift over minutes cancels out (bench-notes.md)."""
    return summarize([a / b for a, b in zip(ours, theirs, strict=False) if b > 0])
