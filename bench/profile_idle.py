"""RSS of postroom holding N IMAP connections in IDLE (tuning aid, not `make bench`).

Owns one manual run: postroom on its own ports (not profile_rate's: both may run at
once) with cheap password hashes for the IDLE users, RLIMIT_NOFILE raised for this process
and the server it starts, then bench.scale.measure_idle: N TLS connections LOGIN, SELECT,
IDLE; RSS before and after; one delivery wakes them all.
Usage: `.venv/bin/python -m bench.profile_idle [--connections 10000]`.
"""

from __future__ import annotations

import argparse
import asyncio
import smtplib
import sys

from bench.harness import HOST, WORK_DIR, bench_user, raise_nofile_limit
from bench.scale import measure_idle
from bench.target import Postroom

USERS = [bench_user(i) for i in range(41, 51)]
_PORTS = {"SMTP": 48125, "SUBMISSION": 48587, "SUBMISSIONS": 48465, "IMAP": 48143,
          "IMAPS": 48993, "POP3": 48110, "POP3S": 48995}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=10_000)
    args = parser.parse_args()
    limit = raise_nofile_limit(2 * args.connections + 1000)
    env = {f"{name}_PORT": str(port) for name, port in _PORTS.items()}
    postroom = Postroom(root=WORK_DIR / "profile_idle", extra_env=env)
    postroom.configure()
    postroom.add_accounts([], USERS)
    postroom.start()
    try:
        pid, smtp_port, imaps_port = postroom.pid, postroom.port("smtp"), postroom.port("imaps")
        assert pid is not None and smtp_port is not None and imaps_port is not None

        def deliver(_: str) -> None:
            with smtplib.SMTP(HOST, smtp_port, timeout=60) as client:
                client.sendmail("sender@example.org", USERS,
                                b"Subject: wake up\r\n\r\nnew mail for the IDLE clients\r\n")

        result = asyncio.run(measure_idle(imaps_port, USERS, args.connections, pid, deliver))
    finally:
        postroom.stop()
    print(f"nofile limit {limit}; {result.connections} IDLE connections "
          f"(errors: {result.errors}); RSS before {result.rss_before_kib / 1024:.0f} MiB, "
          f"with them {result.rss_idle_kib / 1024:.0f} MiB "
          f"({result.kib_per_connection:.1f} KiB each); set-up {result.setup_seconds:.1f} s; "
          f"all {result.woken} woken in {result.wakeup_seconds} s, "
          f"CPU meanwhile: server {result.server_cpu_wakeup:.2f} s, "
          f"this client {result.client_cpu_wakeup:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
