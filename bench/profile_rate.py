"""Paired SMTP delivery rates, Postfix against postroom, for tuning work (not `make bench`).

Owns one manual measuring run: Postfix and postroom started side by side on their bench
ports, then smtp-source runs alternating between them (A B B A …) for each message size,
printing delivered messages/s and postroom's paired ratio. postroom runs with
TRUSTED_NETWORKS=127.0.0.1/32 (as Postfix's mynetworks) unless --checks is given, which
leaves SPF/DKIM/DMARC on against a local DNS server (tests/support/dnsserver.py).
Usage: `.venv/bin/python -m bench.profile_rate [--sizes 4096,102400] [--repeats 3]
[--messages 2000] [--no-postfix] [--checks]`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
from pathlib import Path

from bench.harness import WORK_DIR, bench_user
from bench.references import Postfix, smtp_source_path
from bench.smtp_load import SmtpCase, SmtpTarget, run_smtp_source
from bench.target import Postroom

_PORTS = {"SMTP": 46125, "SUBMISSION": 46587, "SUBMISSIONS": 46465, "IMAP": 46143,
          "IMAPS": 46993, "POP3": 46110, "POP3S": 46995}


def _start_dns() -> tuple[object, str]:
    from tests.support.dnsserver import DnsTestServer

    # The sender's domain publishes SPF and DMARC, so every check does real lookups.
    server = DnsTestServer()
    server.add("example.org.", "TXT", '"v=spf1 ip4:127.0.0.1 -all"')
    server.add("_dmarc.example.org.", "TXT", '"v=DMARC1; p=none"')
    server.start()
    return server, server.address


def _user_system(pid: int | None) -> tuple[float, float]:
    """User and system CPU milliseconds of a process (all threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) * 1000 / tick, int(fields[12]) * 1000 / tick


def _start_spy(pid: int | None, output: str) -> subprocess.Popen[bytes]:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return subprocess.Popen([py_spy, "record", "--pid", str(pid), "--format", "raw",
                             "--rate", "200", "--output", output, "--nonblocking", "--gil"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="4096,102400")
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-postfix", action="store_true")
    parser.add_argument("--checks", action="store_true")
    parser.add_argument("--silent-dns", action="store_true",
                        help="checks on, against a DNS server that never answers")
    parser.add_argument("--base-port", type=int, default=46025)
    parser.add_argument("--spy", default="", help="py-spy raw output file for postroom")
    args = parser.parse_args()
    env = {"TRUSTED_NETWORKS": "127.0.0.1/32"}
    dns = None
    silent = None
    if args.silent_dns:
        silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # bound, never read
        silent.bind(("127.0.0.1", 0))
        env = {"ENABLE_POLICYD_SPF": "1", "ENABLE_OPENDKIM": "1", "ENABLE_OPENDMARC": "1",
               "DNS_NAMESERVERS": f"127.0.0.1:{silent.getsockname()[1]}"}
    elif args.checks:
        dns, address = _start_dns()
        env = {"ENABLE_POLICYD_SPF": "1", "ENABLE_OPENDKIM": "1", "ENABLE_OPENDMARC": "1",
               "DNS_NAMESERVERS": address}
    # Own ports and directories: a `make bench` run may be using the harness's.
    env |= {f"{name}_PORT": str(port) for name, port in _PORTS.items()}
    postroom = Postroom(root=WORK_DIR / "profile_rate", extra_env=env)
    postroom.configure()
    postroom.add_accounts([bench_user(1)], [])
    postroom.start()
    spy = _start_spy(postroom.pid, args.spy) if args.spy else None
    postfix = None
    targets = [SmtpTarget("postroom", postroom.port("smtp") or 0, postroom.delivered,
                          lambda: postroom.pid)]
    if not args.no_postfix:
        postfix = Postfix(users=1, port=args.base_port, root=WORK_DIR / "profile_postfix")
        postfix.configure()
        postfix.start()
        targets.insert(0, SmtpTarget("Postfix", postfix.port, postfix.delivered, lambda: None))
    try:
        for size in (int(s) for s in args.sizes.split(",")):
            case = SmtpCase(size, args.sessions, args.messages)
            rates: dict[str, list[float]] = {t.name: [] for t in targets}
            for repeat in range(args.repeats):
                order = targets if repeat % 2 == 0 else targets[::-1]
                for target in order:
                    before = _user_system(postroom.pid)
                    run = run_smtp_source(smtp_source_path(), target, case, bench_user(1))
                    if target.name == "postroom":
                        after = _user_system(postroom.pid)
                        print(f"    postroom user {(after[0] - before[0]) / case.messages:.2f}"
                              f" ms/msg, system {(after[1] - before[1]) / case.messages:.2f}"
                              " ms/msg", flush=True)
                    rates[target.name].append(run.delivered_per_s)
                    cpu = f"{run.server_cpu_ms_per_msg:.2f} ms cpu/msg" \
                        if run.server_cpu_ms_per_msg else ""
                    print(f"{size:>7} B {target.name:<9} delivered {run.delivered_per_s:7.1f}/s"
                          f"  accepted {run.accepted_per_s:7.1f}/s {cpu}", flush=True)
            summary = "  ".join(f"{name} median {statistics.median(v):.1f}/s"
                                for name, v in rates.items())
            if postfix is not None:
                ratios = [o / r for o, r in zip(rates["postroom"], rates["Postfix"], strict=True)]
                summary += f"  ratio median {statistics.median(ratios):.2f}"
            print(f"{size:>7} B {summary}", flush=True)
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        postroom.stop()
        if postfix is not None:
            postfix.stop()
        if dns is not None:
            dns.stop()  # type: ignore[attr-defined]
    return 0


if __name__ == "__main__":
    sys.exit(main())
