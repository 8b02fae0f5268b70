"""py-spy profile of postroom under the mixed IMAP load (issue 22), without Dovecot.

Owns one run: postroom of the mixed section's own (bench/work/mixed/), filled as the
section fills it, then the kept-logged-in (or login-per-cycle) mix for `--seconds` while
`py-spy record` samples the server (all threads, `--idle` to see waits too). Writes the
collapsed stacks to bench/work/profile-mixed.txt and prints the hottest frames.

Invariants: py-spy must be installed in .venv (`pip install py-spy`); the server is the
one this script started, stopped by its PID.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import subprocess
import sys
from pathlib import Path

from bench.harness import REPO_DIR, WORK_DIR, bench_user
from bench.mixedload import ACCOUNTS, POSTROOM_OFFSET, fill, make_layout, run_mixed
from bench.target import Postroom


def hottest(collapsed: Path, top: int) -> list[str]:
    """Self time per frame and inclusive time per frame, from py-spy's raw format."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        samples = int(count)
        frames = stack.split(";")
        total += samples
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    lines = [f"{total} samples", "-- self"]
    lines += [f"{n / total:6.1%} {f}" for f, n in own.most_common(top)]
    lines += ["-- inclusive"] + [f"{n / total:6.1%} {f}" for f, n in inclusive.most_common(top)]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_mixed")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--login", action="store_true", help="login per cycle")
    parser.add_argument("--idle", action="store_true", help="py-spy --idle (waits too)")
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    layout = make_layout(22)
    postroom = Postroom(root=WORK_DIR / "mixed" / "profile", port_offset=POSTROOM_OFFSET)
    postroom.configure()
    addresses = [bench_user(a + 1) for a in range(ACCOUNTS)]
    postroom.add_accounts([], cheap_hash=addresses)
    postroom.start()
    out = WORK_DIR / "profile-mixed.txt"
    try:
        port = postroom.port("imaps")
        assert port is not None and postroom.pid is not None
        asyncio.run(fill(port, layout))
        spy = subprocess.Popen(
            [str(REPO_DIR / ".venv" / "bin" / "py-spy"), "record", "--pid", str(postroom.pid),
             "--duration", str(int(args.seconds)), "--format", "raw", "--output", str(out),
             "--rate", "200", "--threads", *(["--idle"] if args.idle else [])],
            stdout=subprocess.DEVNULL)
        result = asyncio.run(run_mixed("postroom", port, layout, args.seconds,
                                       not args.login, 22))
        spy.wait(60)
        print(f"{result.commands_per_s:.0f} cmd/s, errors {result.error_count}",
              file=sys.stderr)
    finally:
        postroom.stop()
    print("\n".join(hottest(out, args.top)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
