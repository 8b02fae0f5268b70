"""`make bench`: run the benchmark sections against postroom and the references.

Owns the command line (--quick default, --full, --sections, --repeats, --output), which
servers each section needs, the order of runs (reference and postroom interleaved, so
the machine's drift over minutes cancels in the paired ratios: reference/bench-notes.md),
and writing bench/RESULTS.md through bench.report.

Invariants: every server is started by this process and stopped by it (by PID or by its
own stop command) before exit, also on errors; a section that fails is reported as such
in RESULTS.md with the error, and the other sections still run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import pickle
import platform
import smtplib
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import report
from bench.checks import measure_checks, measure_rspamd
from bench.fulltext import caught_up
from bench.harness import (
    BENCH_DIR,
    HOST,
    PASSWORD,
    PORTS,
    WORK_DIR,
    bench_user,
    raise_nofile_limit,
    run,
    wait_until,
)
from bench.imap_load import fill_mailbox, mailbox_messages, run_mix
from bench.mixedload import measure_mixed
from bench.nodes import measure_nodes
from bench.outbound import measure_outbound
from bench.pg import server_version
from bench.references import Dovecot, Postfix, smtp_source_path, stop_quietly, versions
from bench.scale import (
    IdleResult,
    big_mailbox_messages,
    fill_postroom,
    measure_big_mailbox,
    measure_idle,
    measure_pop3,
)
from bench.sievebench import measure_sieve
from bench.smtp_load import SmtpTarget, cases, run_interleaved
from bench.target import Postroom, event_loop, imap_processes, smtp_processes

SMTP_USERS = [bench_user(i) for i in range(1, 7)]
IMAP_USERS = [bench_user(i) for i in range(11, 21)]
BIG_USER = bench_user(31)
POP3_USER = bench_user(32)
IDLE_USERS = [bench_user(i) for i in range(41, 51)]
REFERENCE_USERS = 50
SECTIONS = ("smtp", "imap", "mixed", "scale", "nodes", "checks", "rspamd", "sieve", "outbound")
SAVED = WORK_DIR / "last-run.pickle"  # the raw results, so RESULTS.md can be re-rendered


@dataclass(frozen=True, slots=True)
class Plan:
    quick: bool
    sections: tuple[str, ...]
    smtp_repeats: int
    imap_repeats: int
    imap_seconds: float
    big_messages: int
    pop3_messages: int
    idle_connections: int
    output: Path
    check_messages: int = 400  # the checks and rspamd sections: messages per run
    render_only: Path | None = None

    @property
    def mode(self) -> str:
        return "quick" if self.quick else "full"


def parse_args(argv: list[str] | None) -> Plan:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split(
        "\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", default=True,
                      help="a few minutes on 2 cores (default): scale runs reduced")
    size.add_argument("--full", action="store_true",
                      help="the issue-8 sizes: 100,000-message mailbox, 10,000 IDLE, …")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help="comma-separated subset of: " + ", ".join(SECTIONS))
    parser.add_argument("--repeats", type=int, default=0,
                        help="runs per figure and server (default 3 quick, 5 full)")
    parser.add_argument("--big-messages", type=int, default=0)
    parser.add_argument("--pop3-messages", type=int, default=0)
    parser.add_argument("--idle-connections", type=int, default=0)
    parser.add_argument("--check-messages", type=int, default=0,
                        help="messages per run in the checks and rspamd sections "
                             "(default 400 quick, 1200 full)")
    parser.add_argument("--output", type=Path, default=BENCH_DIR / "RESULTS.md")
    parser.add_argument("--render-only", type=Path, metavar="PICKLE",
                        help=f"rewrite --output from a saved run (each run saves {SAVED})")
    args = parser.parse_args(argv)
    quick = not args.full
    sections = tuple(s.strip() for s in args.sections.split(",") if s.strip())
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    repeats = args.repeats or (3 if quick else 5)
    return Plan(
        quick=quick, sections=sections, smtp_repeats=repeats,
        imap_repeats=max(2, repeats - 2), imap_seconds=4.0 if quick else 6.0,
        big_messages=args.big_messages or (10_000 if quick else 100_000),
        pop3_messages=args.pop3_messages or (2_000 if quick else 10_000),
        idle_connections=args.idle_connections or (1_000 if quick else 10_000),
        output=args.output,
        check_messages=args.check_messages or (400 if quick else 1200),
        render_only=args.render_only,
    )


def machine_info() -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError):
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kib / 1024 / 1024:.1f} GiB"
    commit = run(["git", "-C", str(BENCH_DIR.parent), "rev-parse", "--short", "HEAD"],
                 check=False).stdout.strip()
    dirty = run(["git", "-C", str(BENCH_DIR.parent), "status", "--porcelain", "src"],
                check=False).stdout.strip()
    return {
        "CPU": cpu,
        "Cores": str(os.cpu_count()),
        "Memory": memory,
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        **versions(),
        "PostgreSQL": server_version(),
        "postroom": f"{commit}{' + uncommitted changes' if dirty else ''}",
        "postroom event loop": event_loop(),
        "postroom SMTP_PROCESSES": str(smtp_processes()),
        "postroom IMAP_PROCESSES": str(imap_processes()),
    }


@dataclass
class Servers:
    """Lazily configured and started servers; all stopped at the end."""

    postroom: Postroom = field(default_factory=Postroom)
    postfix: Postfix | None = None
    dovecot: Dovecot | None = None
    _postroom_ready: bool = False

    def need_postroom(self) -> Postroom:
        if not self._postroom_ready:
            self.postroom.configure()
            self.postroom.add_accounts(SMTP_USERS + IMAP_USERS + [BIG_USER, POP3_USER],
                                       cheap_hash=IDLE_USERS)
            self.postroom.start()
            self._postroom_ready = True
        if self.postroom.pid is None:
            raise RuntimeError(f"postroom is not running:\n{self.postroom.stderr_tail()}")
        return self.postroom

    def need_postfix(self) -> Postfix:
        if self.postfix is None:
            postfix = Postfix(users=REFERENCE_USERS)
            postfix.configure()
            postfix.start()
            self.postfix = postfix
        return self.postfix

    def need_dovecot(self) -> Dovecot:
        if self.dovecot is None:
            tls_dir = WORK_DIR / "tls"
            tls_dir.mkdir(parents=True, exist_ok=True)
            cert, key = tls_dir / "cert.pem", tls_dir / "key.pem"
            if not cert.exists():
                run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
                     "-keyout", str(key), "-out", str(cert), "-subj", "/CN=reference.bench.test"])
            dovecot = Dovecot(users=REFERENCE_USERS, cert_path=cert, key_path=key)
            dovecot.configure()
            dovecot.start()
            self.dovecot = dovecot
        return self.dovecot

    def stop(self) -> None:
        self.postroom.stop()
        stop_quietly(*(s for s in (self.postfix, self.dovecot) if s is not None))


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- sections -----------------------------------------------------------------------------


def section_smtp(plan: Plan, servers: Servers, runs: list[Any]) -> None:
    postfix, postroom = servers.need_postfix(), servers.need_postroom()
    smtp_port = postroom.port("smtp") or PORTS.postroom_smtp
    reference = SmtpTarget("Postfix", postfix.port, postfix.delivered, lambda: None)
    ours = SmtpTarget("postroom", smtp_port, postroom.delivered, lambda: postroom.pid)
    tool = smtp_source_path()
    for index, case in enumerate(cases(plan.quick)):
        postfix.truncate_log()
        runs += run_interleaved(tool, reference, ours, case, SMTP_USERS[index],
                                plan.smtp_repeats, say)


def section_imap(plan: Plan, servers: Servers, results: list[Any]) -> None:
    dovecot, postroom = servers.need_dovecot(), servers.need_postroom()
    port = imaps_port(postroom)
    messages = mailbox_messages(100)

    async def fill() -> None:
        for target_port in (dovecot.imaps_port, port):
            await asyncio.gather(*(fill_mailbox(target_port, user, messages, connections=1)
                                   for user in IMAP_USERS))

    asyncio.run(fill())
    for stays_logged_in in (False, True):
        for clients in (1, 10):
            for repeat in range(plan.imap_repeats):
                order = [("Dovecot", dovecot.imaps_port), ("postroom", port)]
                if repeat % 2:
                    order.reverse()
                for name, target_port in order:
                    outcome = asyncio.run(run_mix(name, target_port, IMAP_USERS[:clients],
                                                  plan.imap_seconds, stays_logged_in))
                    mode = "logged-in" if stays_logged_in else "sessions"
                    say(f"  imap {mode:<9} {clients:>2} clients {name:<9} "
                        f"{outcome.ops_per_s:7.1f} ops/s"
                        + (f"  errors: {outcome.errors[0]}" if outcome.errors else ""))
                    results.append(outcome)


def imaps_port(postroom: Postroom) -> int:
    port = postroom.port("imaps")
    if port is None:
        raise RuntimeError("postroom has no imaps listener (IMAP not wired in app.py yet?)")
    return port


def section_mixed(plan: Plan, servers: Servers, results: list[Any]) -> None:
    """The mixed IMAP load of issue 22 (bench/mixedload.py): servers of its own."""
    results += measure_mixed(plan.imap_repeats, 3 * plan.imap_seconds, say)


def section_scale(plan: Plan, servers: Servers, out: dict[str, Any]) -> None:
    dovecot, postroom = servers.need_dovecot(), servers.need_postroom()
    port = imaps_port(postroom)
    big = big_mailbox_messages(plan.big_messages)
    say(f"  scale: filling postroom with {len(big)} messages by APPEND")
    fill_seconds = asyncio.run(fill_postroom(port, BIG_USER, big))
    say(f"  scale: filled in {fill_seconds:.1f}s; writing Dovecot's Maildir")
    # SEARCH TEXT is timed once the full-text index holds the mailbox (issue 22;
    # bench/fulltext.py times it without the index, and the indexing itself).
    wait_until(lambda: caught_up(postroom, BIG_USER), 3600, "the full-text index", 0.5)
    started = time.monotonic()
    dovecot.write_messages(BIG_USER, big)
    dovecot_fill = time.monotonic() - started
    del big
    out["big"] = [
        asyncio.run(measure_big_mailbox("Dovecot", dovecot.imaps_port, BIG_USER,
                                        plan.big_messages, plan.imap_repeats, dovecot_fill)),
        asyncio.run(measure_big_mailbox("postroom", port, BIG_USER, plan.big_messages,
                                        plan.imap_repeats, fill_seconds)),
    ]
    for result in out["big"]:
        say(f"  scale: {result.server} SELECT first {result.first_select_s * 1000:.0f} ms, "
            f"UID FETCH FLAGS {min(result.fetch_flags_s):.2f}s")
    drop = mailbox_messages(plan.pop3_messages, seed=3)
    asyncio.run(fill_postroom(port, POP3_USER, drop))
    # As for SEARCH above: RETR is timed once the background full-text indexer holds the
    # maildrop, not while it competes for the CPU (mail arriving at delivery rate is
    # indexed as it comes; 10,000 APPENDs in seconds are not).
    wait_until(lambda: caught_up(postroom, POP3_USER), 3600, "the full-text index", 0.5)
    dovecot.write_messages(POP3_USER, drop)
    del drop
    sample = 200 if plan.quick else 1000
    out["pop3"] = [
        asyncio.run(measure_pop3(name, pop_port, POP3_USER, plan.pop3_messages,
                                 plan.imap_repeats, sample))
        for name, pop_port in (("Dovecot", dovecot.pop3s_port),
                               ("postroom", postroom.port("pop3s") or PORTS.postroom_pop3s))
    ]
    out["idle"] = scale_idle(plan, servers)


def scale_idle(plan: Plan, servers: Servers) -> IdleResult:
    """On a freshly started postroom, so its RSS is the IDLE connections' and not caches
    left by the big mailbox."""
    postroom = servers.postroom
    postroom.stop()
    postroom.start()
    pid = postroom.pid
    assert pid is not None
    smtp_port = postroom.port("smtp") or PORTS.postroom_smtp

    def deliver(_: str) -> None:
        with smtplib.SMTP(HOST, smtp_port, timeout=60) as client:
            client.sendmail("sender@example.org", IDLE_USERS,
                            b"Subject: wake up\r\n\r\nnew mail for the IDLE clients\r\n")

    say(f"  scale: opening {plan.idle_connections} IDLE connections")
    result = asyncio.run(measure_idle(imaps_port(postroom), IDLE_USERS,
                                      plan.idle_connections, pid, deliver))
    say(f"  scale: {result.connections} IDLE, RSS {result.rss_idle_kib / 1024:.0f} MiB")
    return result


def section_nodes(plan: Plan, servers: Servers, out: dict[str, Any]) -> None:
    """SQLite against PostgreSQL with one and two nodes (bench/nodes.py): servers of its
    own, so `servers` is not used."""
    out.update(measure_nodes(plan.quick, plan.smtp_repeats, plan.imap_seconds, say))


def section_checks(plan: Plan, servers: Servers, out: dict[str, Any]) -> None:
    """Checks and filters on against off (bench/checks.py): postroom instances of its own."""
    out.update(measure_checks(plan.check_messages, plan.smtp_repeats, say))


def section_sieve(plan: Plan, servers: Servers, out: dict[str, Any]) -> None:
    """A 20-rule Sieve script against none (bench/sievebench.py)."""
    out.update(measure_sieve(plan.check_messages, plan.smtp_repeats, say))


def section_outbound(plan: Plan, servers: Servers, out: dict[str, Any]) -> None:
    """Queue → smtp-sink, postroom against Postfix (bench/outbound.py): servers of its own."""
    out["result"] = measure_outbound(1000 if plan.quick else 3000, plan.smtp_repeats, say)


def section_rspamd(plan: Plan, servers: Servers, out: dict[str, Any]) -> None:
    """ENABLE_RSPAMD=1 against off, rspamd started by bench/checks.py."""
    out.update(measure_rspamd(plan.check_messages, plan.smtp_repeats, say))


def measure_costs() -> dict[str, float]:
    """Facts RESULTS.md explains gaps with, measured in this process on this machine."""
    from passlib.hash import sha512_crypt

    from postroom.accounts.passwords import hash_password, verify_password
    from postroom.tls.buffers import TLS_READ_BUFFER

    costs = {"tls_read_buffer_kib": TLS_READ_BUFFER / 1024}
    ours = hash_password(PASSWORD)
    theirs = sha512_crypt.using(rounds=5000).hash(PASSWORD)
    for key, check in (("postroom_verify_ms", lambda: verify_password(PASSWORD, ours)),
                       ("dovecot_verify_ms", lambda: sha512_crypt.verify(PASSWORD, theirs))):
        started = time.perf_counter()
        for _ in range(3):
            check()
        costs[key] = (time.perf_counter() - started) / 3 * 1000
    return costs


@contextlib.contextmanager
def section(name: str, errors: dict[str, str]) -> Iterator[None]:
    say(f"== {name}")
    started = time.monotonic()
    try:
        yield
    except Exception as error:
        errors[name] = f"{type(error).__name__}: {error}"
        say(f"!! {name} failed: {errors[name]}")
        traceback.print_exc(file=sys.stderr)
    say(f"== {name} took {time.monotonic() - started:.0f}s")


def render_saved(plan: Plan) -> int:
    assert plan.render_only is not None
    # Our own file, written by this module's previous run: trusted input.
    saved = pickle.loads(plan.render_only.read_bytes())
    plan.output.write_text(report.render(saved["plan"], saved["machine"], saved["results"],
                                         saved["errors"], saved["elapsed"], saved["costs"]))
    say(f"wrote {plan.output} from {plan.render_only}")
    return 0


def main(argv: list[str] | None = None) -> int:
    plan = parse_args(argv)
    if plan.render_only is not None:
        return render_saved(plan)
    # Each IDLE connection is a descriptor in both processes; postroom inherits this.
    raise_nofile_limit(max(4096, plan.idle_connections * 2 + 1000))
    started = time.monotonic()
    machine = machine_info()
    servers = Servers()
    results: dict[str, Any] = {"smtp": [], "imap": [], "mixed": [], "scale": {}, "nodes": {},
                               "checks": {}, "rspamd": {}, "sieve": {},
                               "outbound": {}}
    errors: dict[str, str] = {}
    runners: dict[str, Callable[[Plan, Servers, Any], None]] = {
        "smtp": section_smtp, "imap": section_imap, "mixed": section_mixed,
        "scale": section_scale,
        "nodes": section_nodes, "checks": section_checks, "rspamd": section_rspamd,
        "sieve": section_sieve, "outbound": section_outbound}
    try:
        for name in plan.sections:
            with section(name, errors):
                runners[name](plan, servers, results[name])
    finally:
        servers.stop()
    elapsed = time.monotonic() - started
    costs = measure_costs()
    SAVED.parent.mkdir(parents=True, exist_ok=True)
    SAVED.write_bytes(pickle.dumps({"plan": plan, "machine": machine, "results": results,
                                    "errors": errors, "elapsed": elapsed, "costs": costs}))
    plan.output.write_text(report.render(plan, machine, results, errors, elapsed, costs))
    say(f"wrote {plan.output} ({elapsed:.0f}s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
