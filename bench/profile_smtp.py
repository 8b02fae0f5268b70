"""Profile postroom's SMTP receive path with py-spy while smtp-source loads it.

Owns one manual profiling run (not part of `make bench`): start postroom, attach
`py-spy record` to it, send 4 KB messages over 10 sessions with smtp-source, and print
the hottest functions (own time and total time) from py-spy's raw collapsed stacks.
Usage: `.venv/bin/python -m bench.profile_smtp [--size 4096] [--messages 3000]
[--postgresql]`.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
from pathlib import Path

from bench.harness import HOST, WORK_DIR, bench_user
from bench.pg import PgCluster
from bench.references import smtp_source_path
from bench.smtp_load import CLIENT_NAME, SENDER
from bench.target import Postroom


def top_frames(collapsed: Path, count: int) -> tuple[list[tuple[str, int]],
                                                     list[tuple[str, int]], int]:
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        weight = int(number)
        frames = stack.split(";")
        samples += weight
        own[frames[-1]] += weight
        for frame in set(frames):
            total[frame] += weight
    return own.most_common(count), total.most_common(count * 2), samples


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--gil", action="store_true",
                        help="only samples holding the GIL: Python-level CPU")
    parser.add_argument("--postgresql", action="store_true",
                        help="STORAGE=postgresql on a throwaway cluster (bench/pg.py)")
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    cluster = PgCluster() if args.postgresql else None
    postroom = Postroom(root=WORK_DIR / "profile",
                        storage="postgresql" if cluster else "sqlite")
    if cluster is not None:
        cluster.start()
        postroom.database_url = cluster.create_database("profile")
    postroom.configure()
    postroom.add_accounts([bench_user(1)], [])
    postroom.start()
    output = WORK_DIR / "profile" / "smtp.collapsed"
    try:
        spy = subprocess.Popen([py_spy, "record", "--pid", str(postroom.pid), "--format", "raw",
                                "--rate", "200", "--output", str(output), "--nonblocking",
                                *(["--gil"] if args.gil else [])],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run([smtp_source_path(), "-l", str(args.size), "-m", str(args.messages),
                        "-s", str(args.sessions), "-f", SENDER, "-t", bench_user(1),
                        "-M", CLIENT_NAME, f"{HOST}:{postroom.port('smtp')}"], check=True,
                       capture_output=True)
        spy.send_signal(2)
        spy.wait(60)
    finally:
        postroom.stop()
        if cluster is not None:
            cluster.stop()
    own, total, samples = top_frames(output, args.top)
    print(f"{samples} samples; own time:")
    for frame, weight in own:
        print(f"  {weight * 100 / samples:5.1f} %  {frame}")
    print("total time (inclusive):")
    for frame, weight in total:
        print(f"  {weight * 100 / samples:5.1f} %  {frame}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
