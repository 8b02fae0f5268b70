"""Section `sieve` (issue 19): what a 20-rule active Sieve script costs delivery.

SMTP 4 KB at 10 sessions against two postroom instances with every check off, the same
message and account: one without scripts, one whose account has an active script of 20
rules of the kinds people write (header/address tests into folders, a list sorted by
`:matches` with variables, a flag, a body test), none of which matches the bench message,
so each message runs all 20 and ends in the implicit keep. Target: ≤ 10 % cost, i.e. the
scripted rate ≥ 0.9× the unscripted one (paired per repeat).

Reuses bench/checks.py's servers, runs and tables; owns the script and the rendering.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

from bench.checks import (
    FILTERS_OFF,
    HEADERS,
    MAILAUTH_OFF,
    RECIPIENT,
    SESSIONS,
    Variant,
    _rows,
    _table,
    run_once,
    run_variants,
    signed_message,
    start_variant,
    stop_all,
    variant_ratio,
)
from bench.harness import HOST, REPO_DIR, WORK_DIR
from bench.target import Postroom

RULES = 20
OFF = {**MAILAUTH_OFF, **FILTERS_OFF}
PLAIN = Variant("checks off, no Sieve script", OFF, -19000)
SCRIPTED = Variant(f"checks off, {RULES}-rule Sieve script", OFF, -20000)


def twenty_rules() -> str:
    rules = ['require ["fileinto", "variables", "imap4flags", "body", "subaddress", '
             '"envelope", "relational", "comparator-i;ascii-numeric"];']
    for index in range(RULES - 4):
        kind = index % 4
        if kind == 0:
            rules.append(f'if header :contains "subject" "project-{index}" '
                         f'{{ fileinto "Projects/{index}"; stop; }}')
        elif kind == 1:
            rules.append(f'if address :domain :is "from" "vendor{index}.example" '
                         f'{{ fileinto "Vendors"; stop; }}')
        elif kind == 2:
            rules.append(f'if header :matches "list-id" "*<team{index}.*>*" '
                         '{ fileinto "Lists/${2}"; stop; }')
        else:
            rules.append(f'if envelope :detail "to" "tag{index}" {{ addflag "$Tag{index}"; }}')
    rules.append('if header :value "ge" :comparator "i;ascii-numeric" "x-priority" "9" '
                 '{ addflag "\\\\Flagged"; }')
    rules.append('if exists "x-newsletter" { fileinto "Newsletters"; stop; }')
    rules.append('if body :contains "unsubscribe from this list" { fileinto "Bulk"; stop; }')
    rules.append('if allof (header :contains "from" "boss", header :contains "subject" '
                 '"urgent") { addflag "\\\\Flagged"; }')
    return "\n".join(rules) + "\n"


def put_script(postroom: Postroom) -> None:
    path = postroom.root / "rules.sieve"
    path.write_text(twenty_rules())
    done = subprocess.run([sys.executable, "-m", "postroom", "--config",
                           str(postroom.config_file), "sieve", "put", RECIPIENT, "rules",
                           str(path), "--activate"], cwd=REPO_DIR, capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"sieve put failed: {done.stderr.strip()}")


def measure_sieve(messages: int, repeats: int, say: Callable[[str], None]) -> dict[str, Any]:
    message, _key = signed_message(WORK_DIR / "sieve")
    servers: list[tuple[Variant, Postroom]] = []
    try:
        plain = start_variant(PLAIN, f"{HOST}:9")
        servers.append((PLAIN, plain))
        scripted = start_variant(SCRIPTED, f"{HOST}:9")
        servers.append((SCRIPTED, scripted))
        put_script(scripted)  # while it runs: the next delivery reads it
        for variant, postroom in servers:
            run_once(postroom, variant, -1, message, SESSIONS, None)
        runs = run_variants(servers, message, messages, repeats, None, say)
    finally:
        stop_all(servers)
    return {"runs": runs, "baseline": PLAIN.name, "messages": messages}


def render_sieve(out: dict[str, Any]) -> list[str]:
    ratio = variant_ratio(out, SCRIPTED.name)
    verdict = "not measured"
    if ratio.count:
        cost = (1 - ratio.median) * 100
        verdict = (f"{ratio.median:.2f}× the unscripted rate, a cost of {cost:.0f} % "
                   f"(target ≤ 10 %): {'met' if cost <= 10 else 'MISSED'}")
    return [
        "## Sieve at delivery (issue 19)", "",
        f"SMTP 4 KB at {SESSIONS} sessions ({out['messages']} messages per run), checks "
        f"off, without a script and with a {RULES}-rule active script that no bench message "
        "matches (every rule runs, then the implicit keep); runs rotated, ratios paired.", "",
        *_table(HEADERS[:4], [row[:4] for row in _rows(out)]),
        f"- Issue 19, {RULES}-rule script: {verdict}", "",
    ]
