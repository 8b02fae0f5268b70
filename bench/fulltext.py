"""Full-text index section (issue 22): SEARCH TEXT/BODY on a big mailbox without and with
the index, the index's catch-up after an upgrade, its size, and what indexing costs SMTP
delivery. Run alone (no reference server is needed):

    .venv/bin/python -m bench.fulltext [--messages 100000] [--smtp-messages 1200]

Owns the measurement; bench/RESULTS.md quotes its printout. Invariants: every postroom it
starts (ports harness.PORTS − 15,000/16,000/17,000) is stopped before it returns, also on
errors; the index's answers are checked against the unindexed answers (same hit lists);
times are wall clock for one command, answer fully read, on a fresh connection each.

- Search: one postroom with ENABLE_FTS=0 is filled by IMAP APPEND (bench/scale.py's
  corpus: 1–3 KB messages, NEEDLE in 1 %), SEARCH TEXT/BODY timed, then it restarts with
  ENABLE_FTS=1 — an upgraded installation — and the index is built in the background
  (timed, with the server's CPU); then SEARCH TEXT/BODY again.
- Delivery: two fresh postrooms, ENABLE_FTS=0 and 1, take smtp-source runs (4 KB, 10
  sessions) in turn (A B B A …); rate until the last message is in the mailbox, and CPU
  per message until then and (index on) until the index also holds it.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sqlite3
import statistics
import sys
import time
from dataclasses import dataclass, field

from bench.harness import WORK_DIR, bench_user, tree_cpu_seconds, wait_until
from bench.imap_load import ImapClient
from bench.references import smtp_source_path
from bench.scale import NEEDLE, _logged_in, _timed_ok, big_mailbox_messages, fill_postroom
from bench.smtp_load import SmtpCase, SmtpTarget, run_smtp_source
from bench.target import Postroom

USER = bench_user(33)
ROOT = WORK_DIR / "fulltext"
PROGRESS_SQL = """
SELECT COALESCE(p.indexed_uid, 0), b.uidnext - 1 FROM mailboxes b
JOIN accounts a ON a.id = b.account_id
LEFT JOIN fulltext_progress p ON p.mailbox_id = b.id
WHERE a.address = ? AND b.name = 'INBOX'
"""


@dataclass
class SearchTimes:
    text_s: list[float] = field(default_factory=list)
    body_s: list[float] = field(default_factory=list)
    again: list[float] | None = None  # SEARCH TEXT repeated on the same connection
    hits: set[tuple[str, bytes]] = field(default_factory=set)


@dataclass
class FulltextResult:
    messages: int
    fill_s: float
    without: SearchTimes
    with_index: SearchTimes
    index_s: float
    index_cpu_ms_per_msg: float
    db_mib_before: float
    db_mib_after: float
    delivery: dict[str, list[tuple[float, float, float]]]  # rate/s, CPU ms, CPU+index ms


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def indexed(postroom: Postroom, address: str) -> tuple[int, int]:
    connection = sqlite3.connect(f"file:{postroom.db_path}?mode=ro", uri=True, timeout=10)
    try:
        row = connection.execute(PROGRESS_SQL, (address,)).fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)
    finally:
        connection.close()


def caught_up(postroom: Postroom, address: str) -> bool:
    done, last = indexed(postroom, address)
    return done >= last


def db_mib(postroom: Postroom) -> float:
    files = postroom.data_dir.glob("postroom.sqlite3*")
    return sum(path.stat().st_size for path in files) / 2**20


async def _connect(port: int) -> ImapClient:
    """Logged in; one retry a second later (a server just restarted may drop the first)."""
    try:
        return await _logged_in(port, USER)
    except (OSError, asyncio.IncompleteReadError) as error:
        say(f"  fulltext: connection failed ({error!r}); retrying once")
        await asyncio.sleep(1)
        return await _logged_in(port, USER)


async def time_searches(port: int, repeats: int, into: SearchTimes) -> None:
    """On a fresh connection each: SELECT, SEARCH TEXT (its time includes loading the
    view's per-message flags, as any first search after SELECT), SEARCH BODY, and with
    `into.again` SEARCH TEXT once more."""
    for _ in range(repeats):
        client = await _connect(port)
        try:
            await client.ok("SELECT INBOX")
            keys = [("TEXT", into.text_s), ("BODY", into.body_s)]
            if into.again is not None:
                keys.append(("TEXT", into.again))
            for key, times in keys:
                seconds, data = await _timed_ok(client, f'SEARCH {key} "{NEEDLE}"')
                times.append(seconds)
                match = re.search(rb"\* SEARCH([ 0-9]*)\r\n", data)
                into.hits.add((key, match.group(1) if match else b""))
            await client.command("LOGOUT")
        finally:
            await client.close()


def set_fts(postroom: Postroom, on: bool) -> None:
    text = postroom.config_file.read_text()
    text = re.sub(r"^ENABLE_FTS=.*$", f"ENABLE_FTS={int(on)}", text, flags=re.M)
    postroom.config_file.write_text(text)


def measure_search(messages: int, repeats: int) -> tuple[float, SearchTimes, SearchTimes,
                                                          float, float, float, float]:
    postroom = Postroom(root=ROOT / "search", port_offset=-15_000,
                        extra_env={"ENABLE_FTS": "0"})
    try:
        postroom.configure()
        postroom.add_accounts([], cheap_hash=[USER])
        postroom.start()
        port = postroom.port("imaps")
        assert port is not None
        big = big_mailbox_messages(messages)
        say(f"  fulltext: filling {len(big)} messages by APPEND (ENABLE_FTS=0)")
        fill_s = asyncio.run(fill_postroom(port, USER, big))
        del big
        without = SearchTimes()
        asyncio.run(time_searches(port, repeats, without))
        say(f"  fulltext: without index TEXT {min(without.text_s):.2f}s"
            f" BODY {min(without.body_s):.2f}s")
        postroom.stop()
        before = db_mib(postroom)
        set_fts(postroom, True)
        started = time.monotonic()
        postroom.start()
        assert postroom.pid is not None
        cpu = tree_cpu_seconds(postroom.pid)
        wait_until(lambda: caught_up(postroom, USER), 3600, "the index", interval=0.5)
        index_s = time.monotonic() - started
        cpu_ms = (tree_cpu_seconds(postroom.pid) - cpu) * 1000 / messages
        say(f"  fulltext: indexed {messages} in {index_s:.1f}s ({cpu_ms:.2f} ms CPU/msg)")
        with_index = SearchTimes(again=[])
        port = postroom.port("imaps")
        assert port is not None
        asyncio.run(time_searches(port, repeats, with_index))
        if with_index.hits != without.hits:
            raise RuntimeError("SEARCH answers differ with the index")
        say(f"  fulltext: with index TEXT {min(with_index.text_s) * 1000:.0f} ms"
            f" BODY {min(with_index.body_s) * 1000:.0f} ms")
        return fill_s, without, with_index, index_s, cpu_ms, before, db_mib(postroom)
    finally:
        postroom.stop()


def measure_delivery(count: int, repeats: int) -> dict[str, list[tuple[float, float, float]]]:
    servers = {"off": Postroom(root=ROOT / "off", port_offset=-16_000,
                               extra_env={"ENABLE_FTS": "0"}),
               "on": Postroom(root=ROOT / "on", port_offset=-17_000,
                              extra_env={"ENABLE_FTS": "1"})}
    out: dict[str, list[tuple[float, float, float]]] = {"off": [], "on": []}
    tool = smtp_source_path()
    case = SmtpCase(4 * 1024, 10, count)
    try:
        for postroom in servers.values():
            postroom.configure()
            postroom.add_accounts([USER], cheap_hash=[])
            postroom.start()
        for repeat in range(repeats):
            order = ("off", "on") if repeat % 2 == 0 else ("on", "off")
            for name in order:
                out[name].append(_delivery_run(servers[name], tool, case))
                rate, cpu, total = out[name][-1]
                say(f"  fulltext: smtp index {name:<3} {rate:7.1f} msg/s"
                    f"  CPU {cpu:.2f} ms/msg, with indexing {total:.2f}")
    finally:
        for postroom in servers.values():
            postroom.stop()
    return out


def _delivery_run(postroom: Postroom, tool: str, case: SmtpCase) -> tuple[float, float, float]:
    pid = postroom.pid
    assert pid is not None
    port = postroom.port("smtp")
    assert port is not None
    target = SmtpTarget("postroom", port, postroom.delivered, lambda: postroom.pid)
    cpu_before = tree_cpu_seconds(pid)
    outcome = run_smtp_source(tool, target, case, USER)
    cpu = (tree_cpu_seconds(pid) - cpu_before) * 1000 / case.messages
    if "ENABLE_FTS=1" in postroom.config_file.read_text():
        wait_until(lambda: caught_up(postroom, USER), 600, "the index", interval=0.2)
    total = (tree_cpu_seconds(pid) - cpu_before) * 1000 / case.messages
    return outcome.delivered_per_s, cpu, total


def report(result: FulltextResult) -> str:
    def ms(values: list[float]) -> str:
        return (f"{statistics.median(values) * 1000:.0f} "
                f"({min(values) * 1000:.0f}–{max(values) * 1000:.0f})")

    lines = [
        f"Mailbox of {result.messages:,} messages (filled by APPEND in {result.fill_s:.0f} s);"
        f" SEARCH for `{NEEDLE}` (in 1 %), ms, median (min–max):",
        "",
        "| Index | SEARCH TEXT | SEARCH BODY | database MiB |",
        "|---|---|---|---|",
        f"| none | {ms(result.without.text_s)} | {ms(result.without.body_s)}"
        f" | {result.db_mib_before:.0f} |",
        f"| FTS5 trigram | {ms(result.with_index.text_s)} | {ms(result.with_index.body_s)}"
        f" | {result.db_mib_after:.0f} |",
        "",
        "SEARCH TEXT is the first command after SELECT: it includes loading the view's"
        " per-message flags. Once more on the same connection, with the index:"
        f" {ms(result.with_index.again or [0.0])} ms.",
        "",
        f"Catch-up after the upgrade: {result.index_s:.0f} s for {result.messages:,} messages,"
        f" {result.index_cpu_ms_per_msg:.2f} ms of server CPU per message.",
        "",
        "| SMTP 4 KB, 10 sessions | delivered msg/s | CPU ms/msg | CPU ms/msg incl. index |",
        "|---|---|---|---|",
    ]
    for name, runs in result.delivery.items():
        rates = [run[0] for run in runs]
        lines.append(f"| ENABLE_FTS={1 if name == 'on' else 0} | "
                     f"{statistics.median(rates):.0f} ({min(rates):.0f}–{max(rates):.0f}) | "
                     f"{statistics.median(r[1] for r in runs):.2f} | "
                     f"{statistics.median(r[2] for r in runs):.2f} |")
    off, on = result.delivery["off"], result.delivery["on"]
    ratios = [b[0] / a[0] for a, b in zip(off, on, strict=True)]
    lines.append("")
    lines.append(f"Delivery rate with the index: {statistics.median(ratios):.2f}× without"
                 f" (paired runs, {min(ratios):.2f}–{max(ratios):.2f}).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--smtp-messages", type=int, default=1200)
    parser.add_argument("--repeats", type=int, default=5, help="SMTP runs per server")
    parser.add_argument("--search-repeats", type=int, default=3)
    parser.add_argument("--skip-search", action="store_true")
    args = parser.parse_args(argv)
    ROOT.mkdir(parents=True, exist_ok=True)
    if args.skip_search:
        search = (0.0, SearchTimes([0.0], [0.0]), SearchTimes([0.0], [0.0]), 0.0, 0.0, 0.0, 0.0)
    else:
        search = measure_search(args.messages, args.search_repeats)
    delivery = measure_delivery(args.smtp_messages, args.repeats)
    print(report(FulltextResult(args.messages, *search, delivery)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
