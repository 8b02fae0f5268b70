"""Sections `checks` and `rspamd`: what postroom's inbound checks and filters cost.

Owns the local DNS data the checks are answered from, the DKIM-signed 4 KB message every
run sends, the postroom variants (one instance per configuration, started together on
their own port blocks), interleaved smtp-source runs against them, and the tables.

- `checks` (issues 22 and 18): SMTP 4 KB at 10 sessions against postroom with checks and
  filters off, with the embedded filters only (DNSBL with the default zones, the learning
  filter; GTUBE/EICAR always run), with every check (SPF, DKIM, DMARC and the filters),
  and with every check but DNS_CACHE_SIZE=0. DNS comes from an authoritative test server
  on 127.0.0.1 (tests/support/dnsserver.py) started here: the sender's SPF, DKIM key and
  DMARC records, and an SOA for each list zone so its NXDOMAIN answers carry the negative
  TTL real lists give. Targets: all checks ≥ 0.9× off (issue 22), filters ≥ 0.9× off
  (issue 18).
- `rspamd` (issue 18): the same load with checks off, without and with ENABLE_RSPAMD=1
  against Debian's rspamd (and Redis for its Bayes) started with the minimal local config
  tests/filterd/ writes: the cost of the /checkv2 round trip and rspamd's own scan.

Invariants: every server listens on 127.0.0.1; every process started here is stopped
here (postroom by PID, rspamd and Redis by their own process group); the mail counted is
every message of the recipient's account in the database, whichever mailbox it was filed in.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.harness import (
    HOST,
    PORTS,
    WORK_DIR,
    bench_user,
    paired_ratios,
    summarize,
    tree_cpu_seconds,
    wait_until,
)
from bench.references import smtp_source_path
from bench.target import Postroom

SENDER_DOMAIN = "example.org"
SENDER = f"sender@{SENDER_DOMAIN}"
HELO = f"client.{SENDER_DOMAIN}"
SELECTOR = "bench"
RECIPIENT = bench_user(61)
SESSIONS = 10
MESSAGE_BYTES = 4 * 1024
# Real lists answer NXDOMAIN with short negative TTLs (Spamhaus: seconds); 10 s here keeps
# the cache's help for the one client address of this load on the modest side.
LIST_NEGATIVE_TTL = 10
MAILAUTH_OFF = {"ENABLE_POLICYD_SPF": "0", "ENABLE_OPENDKIM": "0", "ENABLE_OPENDMARC": "0"}
FILTERS_OFF = {"ENABLE_DNSBL": "0", "ENABLE_JUNK_FILTER": "0", "ENABLE_POSTGREY": "0"}
# The load comes from 127.0.0.1, which DNSBL lookups skip unless told (a real MX's clients
# have global addresses); greylisting stays off: it would answer the load 451.
FILTERS_ON = {"ENABLE_DNSBL": "1", "DNSBL_QUERY_PRIVATE": "1", "ENABLE_JUNK_FILTER": "1",
              "ENABLE_POSTGREY": "0"}
MAILAUTH_ON = {"ENABLE_POLICYD_SPF": "1", "ENABLE_OPENDKIM": "1", "ENABLE_OPENDMARC": "1"}

COUNT_ALL_SQL = """
SELECT count(*) FROM messages
JOIN mailboxes ON mailboxes.id = messages.mailbox_id
JOIN accounts ON accounts.id = mailboxes.account_id
WHERE accounts.address = ?
"""


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    env: dict[str, str]
    port_offset: int  # harness.PORTS shifted by this, away from the other sections' blocks


@dataclass(frozen=True, slots=True)
class VariantRun:
    variant: str
    repeat: int
    accepted_per_s: float
    delivered_per_s: float
    cpu_ms_per_msg: float | None
    dns_queries_per_msg: float | None
    scanner_cpu_ms_per_msg: float | None = None  # rspamd's process tree, when it scans


CHECK_VARIANTS = (
    Variant("checks and filters off", {**MAILAUTH_OFF, **FILTERS_OFF}, -13000),
    Variant("embedded filters only", {**MAILAUTH_OFF, **FILTERS_ON}, -14000),
    Variant("all checks", {**MAILAUTH_ON, **FILTERS_ON}, -15000),
    Variant("all checks, DNS_CACHE_SIZE=0", {**MAILAUTH_ON, **FILTERS_ON,
                                             "DNS_CACHE_SIZE": "0"}, -16000),
)
RSPAMD_BASELINE = Variant("checks off", {**MAILAUTH_OFF, **FILTERS_OFF}, -17000)
RSPAMD_OFFSET = -18000


# --- DNS and the message ------------------------------------------------------------------


def sender_zone(dkim_txt: str) -> str:
    """The sender's zone: SPF for the envelope and the HELO name, DKIM key, DMARC p=reject."""
    return (
        "$TTL 3600\n"
        "@ IN SOA ns hostmaster 1 3600 600 86400 300\n"
        "@ IN MX 10 mail\n"
        "@ IN TXT \"v=spf1 ip4:127.0.0.0/8 -all\"\n"
        "mail IN A 127.0.0.1\n"
        "client IN A 127.0.0.1\n"
        "client IN TXT \"v=spf1 a -all\"\n"
        "_dmarc IN TXT \"v=DMARC1; p=reject\"\n"
        f"{SELECTOR}._domainkey IN TXT {txt_strings(dkim_txt)}\n"
    )


def txt_strings(value: str) -> str:
    """A TXT value longer than 255 octets as several quoted strings (RFC 1035 §3.3.14)."""
    return " ".join(f'"{value[i:i + 255]}"' for i in range(0, len(value), 255))


@contextlib.contextmanager
def local_dns(dkim_txt: str) -> Iterator[Any]:
    """The authoritative test server with the sender's zone and every default list zone."""
    from tests.support.dnsserver import DnsTestServer

    from postroom.configfilter import FilterSettings

    server = DnsTestServer(sender_zone(dkim_txt), origin=f"{SENDER_DOMAIN}.")
    defaults = FilterSettings()
    zones = [*defaults.dnsbl_zones, *defaults.dnsbl_domain_zones, *defaults.dnswl_zones]
    soa = f"@ 60 IN SOA ns hostmaster 1 60 60 60 {LIST_NEGATIVE_TTL}\n"
    for zone in {z.split("=")[0].split("*")[0] for z in zones} | {"127.in-addr.arpa"}:
        server.load_zone(soa, f"{zone}.")
    server.add("1.0.0.127.in-addr.arpa", "PTR", "localhost.", ttl=3600)
    with server:
        yield server


def signed_message(folder: Path) -> tuple[Path, str]:
    """A 4 KB message from SENDER with a URL in its body, DKIM-signed (rsa-sha256) by a key
    made here; returns the file for smtp-source -F (LF line ends: it sends CRLF) and the
    key's TXT value."""
    from postroom.mailauth.dkim import sign_message
    from postroom.mailauth.keys import generate_private_key, public_txt_value

    key = generate_private_key()
    head = (f"From: Bench Sender <{SENDER}>\r\nTo: <{RECIPIENT}>\r\n"
            "Subject: quarterly figures\r\nDate: Mon, 07 Dec 2026 05:00:00 +0000\r\n"
            f"Message-ID: <bench-checks@{SENDER_DOMAIN}>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=us-ascii\r\n\r\n")
    line = "The figures are attached below, see https://www.example.org/report for more.\r\n"
    body = line * ((MESSAGE_BYTES - len(head)) // len(line))
    raw = (head + body).encode()
    signature = asyncio.run(sign_message(raw, SENDER_DOMAIN, SELECTOR, key))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "message.eml"
    path.write_bytes((signature + raw).replace(b"\r\n", b"\n").rstrip(b"\n") + b"\n")
    return path, public_txt_value(key)


# --- the servers --------------------------------------------------------------------------


def start_variant(variant: Variant, dns_address: str) -> Postroom:
    slug = "".join(c if c.isalnum() else "-" for c in variant.name.lower())
    postroom = Postroom(root=WORK_DIR / "checks" / slug, port_offset=variant.port_offset,
                        extra_env={"DNS_NAMESERVERS": dns_address, **variant.env})
    postroom.configure()
    postroom.add_accounts([RECIPIENT], cheap_hash=[])
    postroom.start()
    return postroom


def count_all(postroom: Postroom) -> int:
    """Messages of RECIPIENT in any mailbox: a filter may file some into Junk."""
    connection = sqlite3.connect(f"file:{postroom.db_path}?mode=ro", uri=True, timeout=10)
    try:
        row = connection.execute(COUNT_ALL_SQL, (RECIPIENT,)).fetchone()
        return int(row[0]) if row else 0
    finally:
        connection.close()


def run_once(postroom: Postroom, variant: Variant, repeat: int, message: Path,
             messages: int, dns_queries: Callable[[], int] | None,
             scanner_pid: int | None = None) -> VariantRun:
    port = postroom.port("smtp") or PORTS.postroom_smtp + variant.port_offset
    before, queries_before = count_all(postroom), dns_queries() if dns_queries else 0
    pid = postroom.pid
    cpu_before = tree_cpu_seconds(pid) if pid else None
    scanner_before = tree_cpu_seconds(scanner_pid) if scanner_pid else 0.0
    argv = [smtp_source_path(), "-F", str(message), "-m", str(messages), "-s", str(SESSIONS),
            "-f", SENDER, "-t", RECIPIENT, "-M", HELO, f"{HOST}:{port}"]
    started = time.monotonic()
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    accepted_at = time.monotonic()
    if result.returncode != 0:
        raise RuntimeError(f"smtp-source against {variant.name} failed: "
                           f"{(result.stderr or result.stdout).strip()[-400:]}\n"
                           f"{postroom.stderr_tail()}")
    delivered_at = wait_until(lambda: count_all(postroom) >= before + messages, 600,
                              f"{messages} deliveries on {variant.name}", interval=0.01)
    cpu = None
    if cpu_before is not None and pid:
        cpu = (tree_cpu_seconds(pid) - cpu_before) * 1000 / messages
    queries = (dns_queries() - queries_before) / messages if dns_queries else None
    scanner = ((tree_cpu_seconds(scanner_pid) - scanner_before) * 1000 / messages
               if scanner_pid else None)
    return VariantRun(variant.name, repeat, messages / (accepted_at - started),
                      messages / (max(delivered_at, accepted_at) - started), cpu, queries,
                      scanner)


def run_variants(servers: list[tuple[Variant, Postroom]], message: Path, messages: int,
                 repeats: int, dns_queries: Callable[[], int] | None,
                 say: Callable[[str], None],
                 scanner_pids: dict[str, int] | None = None) -> list[VariantRun]:
    """Each repeat runs every variant once, in an order rotated per repeat, so no variant
    always follows the same one (drift cancels in the paired ratios)."""
    runs: list[VariantRun] = []
    for repeat in range(repeats):
        shift = repeat % len(servers)
        for variant, postroom in servers[shift:] + servers[:shift]:
            outcome = run_once(postroom, variant, repeat, message, messages, dns_queries,
                               (scanner_pids or {}).get(variant.name))
            say(f"  {variant.name:<30} delivered {outcome.delivered_per_s:7.1f}/s"
                + (f"  {outcome.dns_queries_per_msg:.2f} DNS queries/msg"
                   if outcome.dns_queries_per_msg is not None else ""))
            runs.append(outcome)
    return runs


def stop_all(servers: list[tuple[Variant, Postroom]]) -> None:
    for _, postroom in servers:
        postroom.stop()


# --- the sections -------------------------------------------------------------------------


def measure_checks(messages: int, repeats: int, say: Callable[[str], None]) -> dict[str, Any]:
    message, dkim_txt = signed_message(WORK_DIR / "checks")
    servers: list[tuple[Variant, Postroom]] = []
    with local_dns(dkim_txt) as dns:
        try:
            for variant in CHECK_VARIANTS:
                servers.append((variant, start_variant(variant, dns.address)))
            # One warm-up message each, outside the clock: first connections, the SQLite
            # file, the first DNS answers.
            for variant, postroom in servers:
                run_once(postroom, variant, -1, message, SESSIONS, None)
            runs = run_variants(servers, message, messages, repeats,
                                lambda: len(dns.queries), say)
        finally:
            stop_all(servers)
    return {"runs": runs, "baseline": CHECK_VARIANTS[0].name, "messages": messages}


def measure_rspamd(messages: int, repeats: int, say: Callable[[str], None]) -> dict[str, Any]:
    from tests.filterd.daemons import (
        REDIS,
        RSPAMD,
        RSPAMD_PASSWORD,
        start_redis,
        start_rspamd,
    )

    for binary in (RSPAMD, REDIS):
        if not Path(binary).exists():
            raise RuntimeError(f"{binary} is not installed (apt-get install rspamd redis-server)")
    folder = WORK_DIR / "rspamd"
    message, _key = signed_message(folder)  # no DNS here: the checks using the key are off
    redis, redis_port = start_redis(folder / "redis")
    servers: list[tuple[Variant, Postroom]] = []
    try:
        rspamd, normal, _controller = start_rspamd(folder / "daemon", redis_port)
        try:
            with_rspamd = Variant("checks off + ENABLE_RSPAMD=1", {
                **RSPAMD_BASELINE.env, "ENABLE_RSPAMD": "1",
                "RSPAMD_URL": f"http://{HOST}:{normal}", "RSPAMD_PASSWORD": RSPAMD_PASSWORD,
            }, RSPAMD_OFFSET)
            for variant in (RSPAMD_BASELINE, with_rspamd):
                servers.append((variant, start_variant(variant, f"{HOST}:9")))
            for variant, postroom in servers:
                run_once(postroom, variant, -1, message, SESSIONS, None)
            assert rspamd.process is not None
            runs = run_variants(servers, message, messages, repeats, None, say,
                                {with_rspamd.name: rspamd.process.pid})
        finally:
            stop_all(servers)
            rspamd.stop()
    finally:
        redis.stop()
    return {"runs": runs, "baseline": RSPAMD_BASELINE.name, "messages": messages}


# --- RESULTS.md ---------------------------------------------------------------------------


def _by_variant(runs: list[VariantRun]) -> dict[str, list[VariantRun]]:
    grouped: dict[str, list[VariantRun]] = {}
    for outcome in runs:
        grouped.setdefault(outcome.variant, []).append(outcome)
    return grouped


def variant_ratio(out: dict[str, Any], name: str) -> Any:
    """Paired ratio (same repeat) of a variant's delivered rate to the baseline's."""
    grouped = _by_variant(out["runs"])
    ours = {r.repeat: r.delivered_per_s for r in grouped.get(name, [])}
    base = {r.repeat: r.delivered_per_s for r in grouped.get(out["baseline"], [])}
    shared = sorted(set(ours) & set(base))
    return paired_ratios([ours[i] for i in shared], [base[i] for i in shared])


def _rows(out: dict[str, Any]) -> list[list[str]]:
    rows = []
    for name, runs in _by_variant(out["runs"]).items():
        cpu = [r.cpu_ms_per_msg for r in runs if r.cpu_ms_per_msg is not None]
        queries = [r.dns_queries_per_msg for r in runs if r.dns_queries_per_msg is not None]
        ratio = variant_ratio(out, name)
        rows.append([name, summarize([r.delivered_per_s for r in runs]).render(0),
                     "1.00×" if name == out["baseline"] else ratio.render(2) + "×",
                     summarize(cpu).render(2) if cpu else "n/a",
                     summarize(queries).render(2) if queries else "n/a"])
    return rows


def _target(out: dict[str, Any], name: str, label: str) -> str:
    ratio = variant_ratio(out, name)
    if not ratio.count:
        return f"- {label}: not measured"
    verdict = "met" if ratio.median >= 0.9 else "MISSED"
    return (f"- {label}: {ratio.median:.2f}× the checks-off rate (target ≥ 0.9×): "
            f"{verdict} ({(ratio.median / 0.9 - 1) * 100:+.0f} % vs target)")


HEADERS = ["postroom configuration", "delivered msg/s", "ratio to baseline (paired)",
           "CPU ms/msg", "DNS queries/msg"]


def render_checks(out: dict[str, Any]) -> list[str]:
    return [
        "## Checks and filters (issues 22 and 18)", "",
        f"SMTP {MESSAGE_BYTES // 1024} KB at {SESSIONS} sessions ({out['messages']} messages "
        "per run, smtp-source -F with one DKIM-signed message from "
        f"{SENDER_DOMAIN}, which publishes SPF, DKIM and DMARC p=reject), one postroom per "
        "configuration, runs rotated. DNS from an authoritative server on 127.0.0.1 started "
        f"by the bench; the list zones answer NXDOMAIN with a {LIST_NEGATIVE_TTL} s negative "
        "TTL; DNSBL_QUERY_PRIVATE=1 so the loopback client is looked up as a real one would "
        "be (one address, so after the first message those lookups are cache hits).", "",
        *_table(HEADERS, _rows(out)),
        _target(out, CHECK_VARIANTS[2].name, "Issue 22, all checks on"),
        _target(out, CHECK_VARIANTS[1].name, "Issue 18, embedded filters on"),
        "",
    ]


def render_rspamd(out: dict[str, Any]) -> list[str]:
    grouped = _by_variant(out["runs"])
    cost = ""
    names = [name for name in grouped if name != out["baseline"]]
    if names and grouped[out["baseline"]]:
        base = summarize([r.delivered_per_s for r in grouped[out["baseline"]]]).median
        ours = summarize([r.delivered_per_s for r in grouped[names[0]]]).median
        if base > 0 and ours > 0:
            cost = (f"With rspamd each message takes {(1 / ours - 1 / base) * 1000:.1f} ms "
                    f"more of the run's wall time at {SESSIONS} sessions (medians).")
    return [
        "## The rspamd path (issue 18)", "",
        f"SMTP {MESSAGE_BYTES // 1024} KB at {SESSIONS} sessions ({out['messages']} messages "
        "per run), checks off, without and with ENABLE_RSPAMD=1 against Debian's rspamd "
        "(one normal worker, the minimal local config of tests/filterd/: regexp rules and a "
        "Redis Bayes, no network); a production rspamd with all its modules costs more of "
        "its own CPU per scan. rspamd's and Redis's CPU is not in postroom's column.", "",
        *_table([*HEADERS[:4], "rspamd CPU ms/msg"],
                [[*row[:4], _scanner_cpu(out, row[0])] for row in _rows(out)]),
        cost, "",
    ]


def _scanner_cpu(out: dict[str, Any], name: str) -> str:
    values = [r.scanner_cpu_ms_per_msg for r in _by_variant(out["runs"]).get(name, [])
              if r.scanner_cpu_ms_per_msg is not None]
    return summarize(values).render(2) if values else "—"


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]
