"""Rendering bench/RESULTS.md from one run's results.

Owns the layout of RESULTS.md: how the run was made, the machine, the issue-8 targets
(met / missed, by how much), then every figure as median (range) over the repeated runs
with postroom's paired ratio to the reference.

Invariants: figures come only from the run being rendered; a section that did not run or
failed says so instead of showing stale numbers; a target evaluated on smaller sizes than
the issue names says so.
"""

from __future__ import annotations

import datetime as dt
import textwrap
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from bench.checks import render_checks, render_rspamd
from bench.harness import Summary, paired_ratios, percentile, summarize
from bench.mixedload import render_mixed
from bench.outbound import render_outbound
from bench.sievebench import render_sieve

MIX_COMMANDS = ("connect+TLS", "LOGIN", "SELECT", "FETCH FLAGS", "FETCH HEADERS",
                "FETCH BODY", "STORE", "SEARCH", "APPEND", "EXPUNGE", "LOGOUT")


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def _ratio(summary: Summary) -> str:
    return summary.render(2) + "×" if summary.count else "n/a"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


# --- SMTP ---------------------------------------------------------------------------------


def _smtp_groups(runs: Sequence[Any]) -> dict[Any, dict[str, list[Any]]]:
    groups: dict[Any, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for outcome in runs:
        groups[outcome.case][outcome.server].append(outcome)
    return groups


def smtp_ratio(runs: Sequence[Any], size_kb: int, sessions: int) -> Summary:
    for case, by_server in _smtp_groups(runs).items():
        if case.size_bytes == size_kb * 1024 and case.sessions == sessions:
            return paired_ratios([r.delivered_per_s for r in by_server["postroom"]],
                                 [r.delivered_per_s for r in by_server["Postfix"]])
    return summarize([])


def render_smtp(runs: Sequence[Any]) -> list[str]:
    rows = []
    for case, by_server in _smtp_groups(runs).items():
        ours, theirs = by_server["postroom"], by_server["Postfix"]
        cpu = [r.server_cpu_ms_per_msg for r in ours if r.server_cpu_ms_per_msg is not None]
        row = [case.label, f"{case.messages}"]
        for attribute in ("accepted_per_s", "delivered_per_s"):
            a = [getattr(r, attribute) for r in ours]
            b = [getattr(r, attribute) for r in theirs]
            row += [summarize(b).render(), summarize(a).render(), _ratio(paired_ratios(a, b))]
        rows.append([*row, summarize(cpu).render(2)])
    headers = ["Case", "Msgs/run", "Postfix accepted/s", "postroom accepted/s", "ratio",
               "Postfix in mailbox/s", "postroom in mailbox/s", "ratio",
               "postroom CPU ms/msg"]
    return [
        "## SMTP: smtp-source → Postfix (virtual Maildir) and postroom",
        "",
        "One TCP connection per message (smtp-source without `-d`); messages per second",
        "until smtp-source had every 250 (accepted) and until the recipient's mailbox held",
        "them all (counted in the Maildir / in postroom's DB), from the same start. Ratios",
        "are postroom/Postfix, paired per back-to-back run. CPU: postroom's processes",
        "(the main one and its SMTP workers, user+system) per message.",
        "",
        *_table(headers, rows),
    ]


# --- IMAP ---------------------------------------------------------------------------------


def _mix_key(result: Any) -> tuple[bool, int]:
    return (result.stays_logged_in, result.clients)


def mix_ratio(results: Sequence[Any], clients: int, stays_logged_in: bool) -> Summary:
    ours = [r.ops_per_s for r in results
            if r.server == "postroom" and _mix_key(r) == (stays_logged_in, clients)]
    theirs = [r.ops_per_s for r in results
              if r.server == "Dovecot" and _mix_key(r) == (stays_logged_in, clients)]
    return paired_ratios(ours, theirs)


def render_imap(results: Sequence[Any]) -> list[str]:
    rows = []
    for stays_logged_in in (False, True):
        for clients in (1, 10):
            ours = [r for r in results if r.server == "postroom"
                    and _mix_key(r) == (stays_logged_in, clients)]
            theirs = [r for r in results if r.server == "Dovecot"
                      and _mix_key(r) == (stays_logged_in, clients)]
            if not ours and not theirs:
                continue
            errors = sum(len(r.errors) for r in ours + theirs)
            rows.append(["logged in" if stays_logged_in else "session per round",
                         str(clients), summarize([r.ops_per_s for r in theirs]).render(),
                         summarize([r.ops_per_s for r in ours]).render(),
                         _ratio(mix_ratio(results, clients, stays_logged_in)),
                         str(errors)])
    lines = [
        "## IMAP: mix of commands, our asyncio load generator over TLS",
        "",
        "Round: SELECT INBOX, FETCH 1:* (FLAGS), FETCH 20 × BODY.PEEK[HEADER], 3 × FETCH",
        "BODY[], 2 × STORE +FLAGS, SEARCH (UNSEEN / TEXT), APPEND 4 KB, UID STORE \\Deleted +",
        "EXPUNGE of the appended message. *Session per round*: connect, LOGIN, round, LOGOUT",
        "(the issue's mix). *Logged in*: LOGIN once, rounds until the time is up (a desktop",
        "client). Each client has its own account and a 100-message INBOX. Operations =",
        "commands (connect+TLS is timed, not counted).",
        "",
        *_table(["Mix", "Clients", "Dovecot ops/s", "postroom ops/s", "postroom/Dovecot",
                 "errors"], rows),
    ]
    for stays_logged_in in (False, True):
        for clients in (1, 10):
            lines += _latency_table(results, clients, stays_logged_in)
    return lines


def _latency_table(results: Sequence[Any], clients: int, stays_logged_in: bool) -> list[str]:
    pooled: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for result in results:
        if _mix_key(result) != (stays_logged_in, clients):
            continue
        for command, values in result.latencies.items():
            pooled[result.server][command].extend(values)
    if not pooled:
        return []
    rows = []
    for command in MIX_COMMANDS:
        theirs, ours = pooled["Dovecot"][command], pooled["postroom"][command]
        if not theirs and not ours:
            continue
        rows.append([command, str(len(ours)),
                     _ms(percentile(theirs, 0.5)), _ms(percentile(ours, 0.5)),
                     _ms(percentile(theirs, 0.99)), _ms(percentile(ours, 0.99))])
    mode = "logged in" if stays_logged_in else "session per round"
    who = "1 client" if clients == 1 else f"{clients} clients"
    return [f"Latency per command, {who}, {mode} (ms, pooled over runs):", "",
            *_table(["Command", "postroom n", "Dovecot p50", "postroom p50", "Dovecot p99",
                     "postroom p99"], rows)]


# --- scale --------------------------------------------------------------------------------


def render_scale(scale: dict[str, Any]) -> list[str]:
    lines = ["## Scale", ""]
    big = scale.get("big", [])
    if big:
        rows = [[r.server, f"{r.messages:,}",
                 f"{r.fill_seconds:.0f} s" if r.fill_seconds is not None else "",
                 _ms(r.first_select_s), summarize([x * 1000 for x in r.select_s]).render(1),
                 summarize([x * 1000 for x in r.fetch_flags_s]).render(0),
                 summarize([x * 1000 for x in r.search_text_s]).render(0),
                 str(r.search_hits)] for r in big]
        lines += [f"Big mailbox ({big[0].messages:,} messages, 1–3 KB each). postroom filled by",
                  "IMAP APPEND (LITERAL+, 4 connections × 32 in flight); Dovecot's Maildir",
                  "written directly, so its first SELECT builds the index. Times in ms.", "",
                  *_table(["Server", "Messages", "Fill", "First SELECT", "SELECT",
                           "UID FETCH 1:* (FLAGS)", "SEARCH TEXT", "hits"], rows)]
    pop3 = scale.get("pop3", [])
    if pop3:
        rows = [[r.server, f"{r.messages:,}",
                 summarize([x * 1000 for x in r.login_s]).render(1),
                 summarize([x * 1000 for x in r.stat_s]).render(1),
                 _ms(r.retr_p50), _ms(r.retr_p99), summarize(r.retr_per_s).render(0)]
                for r in pop3]
        lines += ["POP3 over TLS on one maildrop (first round includes Dovecot's index build).",
                  "", *_table(["Server", "Messages", "connect+USER/PASS ms", "STAT ms",
                               "RETR p50 ms", "RETR p99 ms", "RETR msg/s"], rows)]
    idle = scale.get("idle")
    if idle is not None:
        rows = [[f"{idle.connections:,}", f"{idle.rss_before_kib / 1024:.0f}",
                 f"{idle.rss_idle_kib / 1024:.0f}", f"{idle.kib_per_connection:.1f}",
                 f"{idle.setup_seconds:.0f}",
                 f"{idle.wakeup_seconds * 1000:.0f}" if idle.wakeup_seconds else "n/a",
                 f"{idle.woken:,}"]]
        lines += ["IDLE: connections over TLS, each LOGIN + SELECT INBOX + IDLE, spread over",
                  "10 accounts (given a cheap argon2id hash: see README.md); then one message",
                  "to each account and the time until every connection saw its EXISTS.", "",
                  *_table(["Connections", "RSS before MiB", "RSS in IDLE MiB", "KiB/conn",
                           "setup s", "wake-up all ms", "woken"], rows)]
        if idle.errors:
            lines += ["IDLE errors: " + "; ".join(idle.errors), ""]
    return lines


# --- nodes (issue 10) ---------------------------------------------------------------------

NODE_CONFIGURATIONS = ("SQLite, 1 node", "PostgreSQL, 1 node", "PostgreSQL, 2 nodes")


def render_nodes(nodes: dict[str, Any]) -> list[str]:
    smtp: dict[str, list[Any]] = defaultdict(list)
    imap: dict[str, list[Any]] = defaultdict(list)
    for run in nodes.get("smtp", []):
        smtp[run.config].append(run)
    for mix in nodes.get("imap", []):
        imap[mix.server].append(mix)
    base = NODE_CONFIGURATIONS[0]
    rows = []
    for config in NODE_CONFIGURATIONS:
        # Runs were appended one per configuration per repeat: position i is repeat i.
        delivered = [r.delivered_per_s for r in smtp[config]]
        ops = [m.ops_per_s for m in imap[config]]
        database = [r.database_cpu_ms_per_msg for r in smtp[config]
                    if r.database_cpu_ms_per_msg is not None]
        rows.append([
            config, summarize(delivered).render(), summarize(ops).render(),
            *(["baseline"] * 2 if config == base else [
                _ratio(paired_ratios(delivered, [r.delivered_per_s for r in smtp[base]])),
                _ratio(paired_ratios(ops, [m.ops_per_s for m in imap[base]]))]),
            summarize([r.postroom_cpu_ms_per_msg for r in smtp[config]]).render(2),
            summarize(database).render(2) if database else "–",
            str(sum(len(m.errors) for m in imap[config]))])
    headers = ["Configuration", "SMTP in mailbox msg/s", "IMAP ops/s", "SMTP vs SQLite 1 node",
               "IMAP vs SQLite 1 node", "postroom CPU ms/msg", "PostgreSQL CPU ms/msg",
               "IMAP errors"]
    return [
        "## Nodes: SQLite against PostgreSQL, one and two nodes (issue 10)",
        "",
        *textwrap.wrap(
            f"SMTP: smtp-source, 4 KB, {nodes.get('messages', 0)} messages and 10 sessions "
            "in total per run; with two nodes, one smtp-source per node (5 sessions and half "
            "the messages each), started together. Rate: all messages over the time until "
            "the recipient's INBOX held every one (counted in the database). IMAP: the "
            f"logged-in mix (see IMAP), 10 clients, {nodes.get('imap_seconds', 0):.0f} s per "
            "run; with two nodes, 5 clients on each. Runs interleaved (A B C, B C A, …), "
            "after one unrecorded warm-up round; ratios to SQLite, one node, are paired "
            "within a repeat. CPU per message: the postroom processes (summed over the "
            "nodes) and the PostgreSQL server (postmaster and backends). PostgreSQL runs "
            "with its default configuration (fsync and synchronous_commit on): bench/pg.py.",
            88, break_on_hyphens=False),
        "",
        "**Read with care:** this machine has 2 cores. Two nodes share the same cores, and",
        "the PostgreSQL server and the load generators share them too, so the two-node row",
        "measures the overhead and correctness of running two nodes on one database, not",
        "the scale-out gain of nodes on their own machines.",
        "",
        *_table(headers, rows),
    ]


# --- targets ------------------------------------------------------------------------------


def _verdict(value: float | None, limit: float, at_least: bool) -> str:
    if value is None:
        return "not measured"
    met = value >= limit if at_least else value < limit
    margin = (value / limit - 1) * 100
    return f"{'met' if met else 'MISSED'} ({margin:+.0f} % vs target)"


def render_targets(plan: Any, results: dict[str, Any]) -> list[str]:
    rows: list[list[str]] = []
    smtp = results.get("smtp", [])
    for size, limit in ((4, 1.0), (100, 0.75)):
        ratio = smtp_ratio(smtp, size, 10) if smtp else summarize([])
        value = ratio.median if ratio.count else None
        rows.append([f"SMTP {size} KB, 10 sessions, delivered msg/s ≥ {limit}× Postfix",
                     _ratio(ratio), _verdict(value, limit, True)])
    imap = results.get("imap", [])
    for stays_logged_in, label in ((False, "session per round (issue's mix)"),
                                   (True, "logged in")):
        ratio = mix_ratio(imap, 10, stays_logged_in) if imap else summarize([])
        rows.append([f"IMAP mix, 10 clients, {label}, ≥ 0.5× Dovecot ops/s", _ratio(ratio),
                     _verdict(ratio.median if ratio.count else None, 0.5, True)])
    rows += _scale_targets(plan, results.get("scale", {}))
    return ["## Issue 8 targets", "",
            *_table(["Target", "Measured", "Verdict"], rows)]


def _scale_targets(plan: Any, scale: dict[str, Any]) -> list[list[str]]:
    rows = []
    idle = scale.get("idle")
    if idle is not None and idle.connections:
        mib = idle.rss_idle_kib / 1024
        if idle.connections >= 10_000:
            rows.append(["10,000 IDLE connections < 500 MB RSS", f"{mib:.0f} MiB",
                         _verdict(mib * 1.048576, 500, False)])
        else:
            projected = (idle.rss_before_kib + idle.kib_per_connection * 10_000) / 1024
            rows.append(["10,000 IDLE connections < 500 MB RSS",
                         f"{mib:.0f} MiB at {idle.connections:,}; ≈{projected:.0f} MiB "
                         "projected to 10,000", _verdict(projected * 1.048576, 500, False)
                         + " (projected: run --full)"])
    big = next((r for r in scale.get("big", []) if r.server == "postroom"), None)
    if big is not None:
        note = "" if big.messages >= 100_000 else f" (at {big.messages:,} only: run --full)"
        select = summarize(big.select_s).median
        fetch = summarize(big.fetch_flags_s).median
        full = big.messages >= 100_000
        rows.append(["SELECT on 100,000 messages < 50 ms", f"{select * 1000:.1f} ms{note}",
                     _verdict(select * 1000, 50, False) if full else "not evaluated"])
        rows.append(["UID FETCH 1:* (FLAGS) on 100,000 < 1 s", f"{fetch:.2f} s{note}",
                     _verdict(fetch, 1.0, False) if full else "not evaluated"])
    else:
        rows.append(["Scale targets", "n/a", "not measured"])
    return rows


# --- why the gaps -------------------------------------------------------------------------


def _median_latency(results: Sequence[Any], server: str, command: str,
                    stays_logged_in: bool) -> float:
    values = [v for r in results if r.server == server and r.clients == 10
              and r.stays_logged_in == stays_logged_in for v in r.latencies.get(command, [])]
    return percentile(values, 0.5)


def _parity_note(smtp: Sequence[Any]) -> str:
    ratio = smtp_ratio(smtp, 4, 10)
    if not ratio.count or ratio.median >= 1:
        return ""
    return (f" Parity at 4 KB, 10 sessions needs the per-message CPU cut to about "
            f"{ratio.median:.0%} of today's.")


def render_findings(results: dict[str, Any], costs: dict[str, float] | None,
                    smtp_processes: str = "1") -> list[str]:
    """What stands between postroom and the references, from this run's own figures."""
    costs = costs or {}
    lines = ["## What stands between postroom and the references", ""]
    smtp = results.get("smtp", [])
    cpu = [r.server_cpu_ms_per_msg for r in smtp
           if r.server == "postroom" and r.server_cpu_ms_per_msg is not None]
    if cpu:
        per_msg = summarize(cpu).median
        lines.append(
            f"- **SMTP is CPU-bound.** postroom spends {per_msg:.1f} ms of CPU per message "
            "(all its processes; median over all SMTP runs), a ceiling of "
            f"≈{1000 / per_msg:.0f} msg/s per process. This run had SMTP_PROCESSES="
            f"{smtp_processes}: sessions spread over that many processes, as Postfix "
            "spreads them over its smtpd processes, so the cores (shared with smtp-source "
            "and the kernel's work) are the limit, not one event loop."
            + _parity_note(smtp))
    imap = results.get("imap", [])
    if imap:
        ours = _median_latency(imap, "postroom", "LOGIN", False)
        theirs = _median_latency(imap, "Dovecot", "LOGIN", False)
        hashing = ""
        if "postroom_verify_ms" in costs:
            hashing = (f" One verification of postroom's default argon2id hash takes "
                       f"{costs['postroom_verify_ms']:.0f} ms here (timed after the run), "
                       "Dovecot's "
                       f"SHA512-CRYPT (5,000 rounds) {costs['dovecot_verify_ms']:.1f} ms.")
        verdict = ("dominates the session mix" if ours > 2 * theirs
                   else "no longer dominates the session mix")
        lines.append(
            f"- **LOGIN {verdict}.** LOGIN p50 at 10 clients: postroom "
            f"{ours * 1000:.0f} ms, Dovecot {theirs * 1000:.0f} ms.{hashing} postroom's "
            "verified-login cache (AUTH_CACHE_TTL, like Dovecot's auth cache) answers a "
            "repeated login without hashing; only an account's first login pays argon2id.")
        slow = []
        for command in ("STORE", "APPEND", "EXPUNGE", "FETCH HEADERS"):
            a = _median_latency(imap, "postroom", command, True)
            b = _median_latency(imap, "Dovecot", command, True)
            if a and b and a > 1.5 * b:
                slow.append(f"{command} {a * 1000:.0f} vs {b * 1000:.0f} ms")
        if slow:
            lines.append("- **Logged-in mix: the slow commands** (p50 at 10 clients, postroom "
                         "vs Dovecot): " + "; ".join(slow) + ". Concurrent writes "
                         "(STORE, APPEND, EXPUNGE) share one SQLite commit and fsync, but "
                         "each still waits for one (a small APPEND's body is a row of "
                         "that same commit), and every command runs in one Python process "
                         "where Dovecot has one per client.")
    lines += _scale_findings(results.get("scale", {}), costs)
    return [*lines, ""]


def _scale_findings(scale: dict[str, Any], costs: dict[str, float]) -> list[str]:
    lines = []
    idle = scale.get("idle")
    if idle is not None and idle.connections:
        buffer = costs.get("tls_read_buffer_kib")
        cause = (f" Of that, about 16 KiB is OpenSSL's own state per connection, about "
                 f"7 KiB asyncio's TLS layer and {buffer:.0f} KiB its read buffer (capped by "
                 "tls/buffers.py; asyncio's default is 256 KiB); a waiting session is one "
                 "task reading its socket." if buffer else "")
        lines.append(f"- **IDLE memory**: {idle.kib_per_connection:.0f} KiB of RSS per IDLE "
                     f"TLS connection.{cause}")
    big = next((r for r in scale.get("big", []) if r.server == "postroom"), None)
    dovecot = next((r for r in scale.get("big", []) if r.server == "Dovecot"), None)
    if big is not None and big.select_s:
        select = summarize(big.select_s).median
        theirs = (f" Dovecot: {summarize(dovecot.select_s).median * 1000:.1f} ms median, "
                  f"{min(dovecot.select_s) * 1000:.1f} ms best (after its first SELECT "
                  f"built the index in {dovecot.first_select_s * 1000:.0f} ms)." if dovecot else "")
        lines.append(
            f"- **SELECT** takes {select * 1000:.0f} ms at {big.messages:,} messages "
            f"({select * 1e6 / big.messages:.2f} µs per message): one statement reads the "
            "UID list, the distinct flag sets and the first unseen message; per-message "
            "flags load at the first command that needs them. The UID list and the "
            "first-unseen scan are still proportional to the mailbox." + theirs)
        lines.append(
            "- **SEARCH TEXT** is answered from the full-text index (timed once it holds "
            f"the mailbox): {summarize(big.search_text_s).median * 1000:.0f} ms "
            f"at {big.messages:,} messages"
            + (f" (Dovecot without FTS: {summarize(dovecot.search_text_s).median:.1f} s)."
               if dovecot else "."))
    return lines


# --- the whole file -----------------------------------------------------------------------


def render(plan: Any, machine: dict[str, str], results: dict[str, Any],
           errors: dict[str, str], elapsed: float,
           machine_costs: dict[str, float] | None = None) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = "make bench" if plan.quick else "python -m bench.run --full"
    lines = [
        "# postroom benchmarks",
        "",
        f"Written by `{command}` (sections: {', '.join(plan.sections)}; {plan.mode} mode) "
        f"on {now}, in {elapsed / 60:.1f} minutes. Every figure is the median (range) over "
        "repeated runs in this one run; postroom and the reference ran alternately, and "
        "ratios are taken pairwise, so compare ratios, not absolute figures across runs "
        "(this machine drifts ±20–40 % within minutes). How to rerun: bench/README.md.",
        "",
        *_table(["Machine", ""], [[key, value] for key, value in machine.items()]),
        *render_targets(plan, results),
    ]
    if errors:
        lines += ["## Sections that failed", ""]
        lines += [f"- **{name}**: `{message}`" for name, message in errors.items()]
        lines.append("")
    if results.get("smtp"):
        lines += render_smtp(results["smtp"])
    if results.get("imap"):
        lines += render_imap(results["imap"])
    if results.get("mixed"):
        lines += ["## Mixed IMAP load (issue 22)", "", *render_mixed(results["mixed"])]
    if results.get("scale"):
        lines += render_scale(results["scale"])
    if results.get("nodes"):
        lines += render_nodes(results["nodes"])
    if results.get("checks"):
        lines += render_checks(results["checks"])
    if results.get("rspamd"):
        lines += render_rspamd(results["rspamd"])
    if results.get("sieve"):
        lines += render_sieve(results["sieve"])
    if results.get("outbound"):
        lines += render_outbound(results["outbound"])
    lines += render_findings(results, machine_costs,
                             machine.get("postroom SMTP_PROCESSES", "1"))
    return "\n".join(lines).rstrip() + "\n"
