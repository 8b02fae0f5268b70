"""Mixed IMAP load (issue 22): a random command mix over 100 accounts, answers checked.

Owns the mixed-load section: ten concurrent clients over implicit TLS, each cycle logged
in to one of 100 accounts (each with INBOX, Archive and Sent filled from bench/mixcorpus.py),
issuing a seeded random mix of LIST, STATUS, SELECT, UID FETCH (FLAGS / BODYSTRUCTURE /
BODY.PEEK[HEADER.FIELDS] / BODY[]), UID STORE, APPEND and UID EXPUNGE (RFC 4315), in two
modes: kept logged in (a desktop client: logins before the clock starts) and a login per
cycle (connect, LOGIN, … LOGOUT: a phone polling). Postroom and Dovecot run alternately in
the same process and their ratios are paired run by run (bench/harness.paired_ratios).

Wrong answers are errors, not noise. The rules that keep the checks valid while clients
share mailboxes (two kept-logged-in clients share one account; per-cycle accounts are
drawn at random, so they collide too):
- the filled messages are never expunged: any UID FETCH of them must return them, with
  exactly the bytes appended (BODY[]), their Subject (HEADER.FIELDS) and their MIME type
  (BODYSTRUCTURE);
- a worker expunges only what it appended itself (UID EXPUNGE of its own UIDs), so it
  knows which of those exist: an existing one must be returned, an expunged one must not;
- flags are only ever added, except each worker's own keyword `$mixN`, which only that
  worker adds and removes: a STORE's answer, and every later FETCH FLAGS, must agree.

Invariants: only 127.0.0.1 is dialled; servers of its own (bench/work/mixed/, ports away
from the other sections) so it can run while other sections' servers are up; the same
seed gives the same corpus, accounts and command sequence per worker.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from bench.harness import (
    PASSWORD,
    WORK_DIR,
    bench_user,
    paired_ratios,
    percentile,
    run,
    summarize,
)
from bench.imap_load import ImapClient, ImapError, Response
from bench.mixcorpus import CorpusMessage, make_corpus
from bench.references import Dovecot, stop_quietly
from bench.target import Postroom

ACCOUNTS = 100
WORKERS = 10
MAILBOXES = {"INBOX": 16, "Archive": 6, "Sent": 4}  # filled messages per account
CORPUS_SIZE = 240
COMMANDS_PER_CYCLE = 8
MAX_OWNED = 6  # a worker's own appended messages per mailbox before it expunges the oldest
# Command weights: reads dominate, as in a mail client; STORE and APPEND are a fifth.
WEIGHTS = {"LIST": 4, "STATUS": 8, "SELECT": 6, "FETCH FLAGS": 14, "FETCH BODYSTRUCTURE": 10,
           "FETCH HEADER.FIELDS": 12, "FETCH BODY": 12, "STORE": 16, "APPEND": 9,
           "EXPUNGE": 9}
SYSTEM_FLAGS = ("\\Seen", "\\Flagged", "\\Answered")
COMMAND_NAMES = ("LOGIN", "SELECT", "LIST", "STATUS", "FETCH FLAGS", "FETCH BODYSTRUCTURE",
                 "FETCH HEADER.FIELDS", "FETCH BODY", "STORE", "APPEND", "EXPUNGE", "LOGOUT")
_FETCH = re.compile(rb"^\* \d+ FETCH \(")
_UID = re.compile(rb"[( ]UID (\d+)")
_FLAGS = re.compile(rb"FLAGS \(([^)]*)\)")
_BODY = re.compile(rb"BODY\[\] \{(\d+)\}\r\n")
_APPENDUID = re.compile(rb"\[APPENDUID \d+ (\d+)\]")


class WrongAnswer(ImapError):
    """The server answered OK with data the model says is wrong."""


@dataclass(frozen=True, slots=True)
class Layout:
    """Which corpus message each filled UID holds, per account and mailbox. Filling
    appends in order over one connection, so UID k of a fresh mailbox is message k."""

    corpus: list[CorpusMessage]

    def filled(self, account: int, mailbox: str) -> list[CorpusMessage]:
        start = (account * 37 + sum(map(ord, mailbox))) % len(self.corpus)
        count = MAILBOXES[mailbox]
        return [self.corpus[(start + j) % len(self.corpus)] for j in range(count)]


@dataclass
class MixedResult:
    server: str
    kept_logged_in: bool
    seconds: float
    commands: int
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    error_count: int = 0

    @property
    def commands_per_s(self) -> float:
        return self.commands / self.seconds if self.seconds else 0.0


def fetch_items(response: Response) -> dict[int, bytes]:
    """UID → its FETCH lines (literals inlined) joined: a server may answer one UID in
    several lines (BODY[] in one, the \\Seen it set, or another client's change, in the
    next), and the last FLAGS is the current one."""
    items: dict[int, bytes] = {}
    for line in response.untagged:
        if _FETCH.match(line) and (match := _UID.search(line[:200])):
            uid = int(match.group(1))
            items[uid] = items.get(uid, b"") + line
    return items


def flags_of(line: bytes) -> set[str]:
    found = _FLAGS.findall(line)
    if not found:
        raise WrongAnswer(f"no FLAGS in {line[:120]!r}")
    return set(found[-1].decode().split())


@dataclass
class Worker:
    """One simulated client: its own RNG, keyword, and model of what it appended."""

    number: int
    port: int
    layout: Layout
    rng: random.Random
    latencies: dict[str, list[float]]
    commands: int = 0
    error_count: int = 0
    errors: list[str] = field(default_factory=list)
    # (account, mailbox) → {uid: message} it appended and has not expunged, in order
    owned: dict[tuple[int, str], dict[int, CorpusMessage]] = field(default_factory=dict)
    gone: dict[tuple[int, str], set[int]] = field(default_factory=lambda: defaultdict(set))
    keyword: dict[tuple[int, str], dict[int, bool]] = field(
        default_factory=lambda: defaultdict(dict))
    # system flags this worker stored (nobody removes them): must read back, always
    stored: dict[tuple[int, str], dict[int, set[str]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(set)))
    client: ImapClient | None = None
    account: int = 0
    mailbox: str = "INBOX"

    @property
    def flag(self) -> str:
        return f"$mix{self.number}"

    async def timed(self, name: str, text: str, literal: bytes | None = None) -> Response:
        assert self.client is not None
        started = time.perf_counter()
        response = await self.client.ok(text, literal)
        self.latencies[name].append(time.perf_counter() - started)
        self.commands += 1
        return response

    async def login(self, account: int) -> None:
        self.client = await ImapClient.connect(self.port)
        self.account = account
        await self.timed("LOGIN", f'LOGIN "{bench_user(account + 1)}" "{PASSWORD}"')

    async def logout(self) -> None:
        if self.client is None:
            return
        try:
            await self.timed("LOGOUT", "LOGOUT")
        finally:
            await self.drop()

    async def drop(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            await client.close()

    # --- the cycle ------------------------------------------------------------------------

    async def cycle(self) -> None:
        await self.select(self.rng.choice(tuple(MAILBOXES)))
        names, weights = zip(*WEIGHTS.items(), strict=True)
        for name in self.rng.choices(names, weights, k=COMMANDS_PER_CYCLE):
            await COMMANDS[name](self)

    def key(self) -> tuple[int, str]:
        return (self.account, self.mailbox)

    def known_uids(self) -> list[int]:
        filled = len(self.layout.filled(self.account, self.mailbox))
        return list(range(1, filled + 1)) + list(self.owned.get(self.key(), {}))

    def expected(self, uid: int) -> CorpusMessage:
        filled = self.layout.filled(self.account, self.mailbox)
        if uid <= len(filled):
            return filled[uid - 1]
        return self.owned[self.key()][uid]

    async def select(self, mailbox: str) -> None:
        response = await self.timed("SELECT", f"SELECT {mailbox}")
        self.mailbox = mailbox
        exists = next((int(m.group(1)) for line in response.untagged
                       if (m := re.match(rb"\* (\d+) EXISTS", line))), -1)
        if exists < MAILBOXES[mailbox]:
            raise WrongAnswer(f"SELECT {mailbox}: {exists} EXISTS, filled {MAILBOXES[mailbox]}")

    async def list_(self) -> None:
        response = await self.timed("LIST", 'LIST "" "*"')
        text = b"".join(response.untagged)
        for mailbox in MAILBOXES:
            if mailbox.encode() not in text:
                raise WrongAnswer(f"LIST without {mailbox}")

    async def status(self) -> None:
        other = self.rng.choice([m for m in MAILBOXES if m != self.mailbox])
        response = await self.timed("STATUS", f"STATUS {other} (MESSAGES UIDNEXT UNSEEN)")
        match = re.search(rb"MESSAGES (\d+)", b"".join(response.untagged))
        if match is None or int(match.group(1)) < MAILBOXES[other]:
            raise WrongAnswer(f"STATUS {other}: {b''.join(response.untagged)[:120]!r}")

    def sample(self, most: int) -> list[int]:
        uids = self.known_uids()
        return sorted(self.rng.sample(uids, min(most, len(uids))))

    def gone_sample(self) -> list[int]:
        return sorted(self.gone[self.key()])[-2:]

    async def fetch_flags(self) -> None:
        uids = self.sample(10)
        asked = uids + self.gone_sample()
        response = await self.timed("FETCH FLAGS",
                                    f"UID FETCH {','.join(map(str, asked))} (FLAGS)")
        items = fetch_items(response)
        for uid in uids:
            self.check_flags(uid, items)
        for uid in self.gone_sample():
            if uid in items:
                raise WrongAnswer(f"{self.mailbox} UID {uid} expunged, still fetched")

    def check_flags(self, uid: int, items: dict[int, bytes]) -> None:
        if uid not in items:
            raise WrongAnswer(f"{self.mailbox} UID {uid} missing (never expunged)")
        flags = flags_of(items[uid])
        missing = self.stored[self.key()].get(uid, set()) - flags
        if missing:
            raise WrongAnswer(f"UID {uid}: {' '.join(missing)} stored, FLAGS "
                              f"({' '.join(flags)})")
        mine = self.keyword[self.key()].get(uid)
        if mine is not None and mine != (self.flag in flags):
            raise WrongAnswer(f"UID {uid}: {self.flag} should be {'set' if mine else 'unset'}")

    async def fetch_structure(self) -> None:
        uid = self.rng.choice(self.known_uids())
        response = await self.timed("FETCH BODYSTRUCTURE", f"UID FETCH {uid} (BODYSTRUCTURE)")
        line = fetch_items(response).get(uid, b"")
        maintype, subtype = self.expected(uid).mime_type.upper().split("/")
        wanted = f'"{subtype}"' if maintype == "MULTIPART" else f'"{maintype}" "{subtype}"'
        if wanted.encode() not in line.upper():
            raise WrongAnswer(f"UID {uid} BODYSTRUCTURE lacks {wanted}: {line[:120]!r}")

    async def fetch_headers(self) -> None:
        uids = self.sample(5)
        response = await self.timed(
            "FETCH HEADER.FIELDS",
            f"UID FETCH {','.join(map(str, uids))} (BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)])")
        items = fetch_items(response)
        for uid in uids:
            subject = self.expected(uid).subject.encode()
            if subject not in items.get(uid, b"").replace(b"\r\n ", b" "):
                raise WrongAnswer(f"UID {uid} HEADER.FIELDS without its Subject")

    async def fetch_body(self) -> None:
        uid = self.rng.choice(self.known_uids())
        response = await self.timed("FETCH BODY", f"UID FETCH {uid} (BODY[])")
        line = fetch_items(response).get(uid, b"")
        match = _BODY.search(line)
        data = self.expected(uid).data
        if match is None or line[match.end():match.end() + int(match.group(1))] != data:
            raise WrongAnswer(f"UID {uid} BODY[] differs from what was appended")

    async def store(self) -> None:
        uid = self.rng.choice(self.known_uids())
        mine = self.keyword[self.key()]
        if self.rng.random() < 0.5:
            flag = self.rng.choice(SYSTEM_FLAGS)
            command = f"UID STORE {uid} +FLAGS ({flag})"
        else:
            flag = self.flag
            setting = not mine.get(uid, False)
            command = f"UID STORE {uid} {'+' if setting else '-'}FLAGS ({flag})"
        known = flag == self.flag and uid in mine  # else it may be set already
        response = await self.timed("STORE", command)
        items = fetch_items(response)
        if flag == self.flag:
            mine[uid] = setting
        else:
            self.stored[self.key()][uid].add(flag)
        if uid not in items and not known:
            return  # Dovecot leaves out the FETCH when nothing changed (a run before set it)
        self.check_flags(uid, items)

    async def append(self) -> None:
        message = self.rng.choice(self.layout.corpus)
        response = await self.timed("APPEND", f"APPEND {self.mailbox}", message.data)
        match = _APPENDUID.search(response.text)
        if match is None:
            raise WrongAnswer(f"APPEND without APPENDUID: {response.text[:120]!r}")
        owned = self.owned.setdefault(self.key(), {})
        owned[int(match.group(1))] = message
        if len(owned) > MAX_OWNED:
            await self.expunge()

    async def expunge(self) -> None:
        owned = self.owned.get(self.key(), {})
        if not owned:
            return await self.append()
        uid = next(iter(owned))
        await self.timed("STORE", f"UID STORE {uid} +FLAGS.SILENT (\\Deleted)")
        response = await self.timed("EXPUNGE", f"UID EXPUNGE {uid}")
        if not any(re.match(rb"\* (\d+ EXPUNGE|VANISHED)", line) for line in response.untagged):
            raise WrongAnswer(f"UID EXPUNGE {uid} reported no EXPUNGE")
        del owned[uid]
        self.keyword[self.key()].pop(uid, None)
        self.stored[self.key()].pop(uid, None)
        self.gone[self.key()].add(uid)
        return None


COMMANDS: dict[str, Callable[[Worker], Awaitable[None]]] = {
    "LIST": Worker.list_, "STATUS": Worker.status, "SELECT": lambda w: w.select(
        w.rng.choice(tuple(MAILBOXES))),
    "FETCH FLAGS": Worker.fetch_flags, "FETCH BODYSTRUCTURE": Worker.fetch_structure,
    "FETCH HEADER.FIELDS": Worker.fetch_headers, "FETCH BODY": Worker.fetch_body,
    "STORE": Worker.store, "APPEND": Worker.append, "EXPUNGE": Worker.expunge,
}


async def _run_worker(worker: Worker, deadline: float, kept: bool, account: int) -> None:
    while time.monotonic() < deadline:
        try:
            if worker.client is None:
                await worker.login(account if kept else worker.rng.randrange(ACCOUNTS))
            await worker.cycle()
            if not kept:
                await worker.logout()
        except (ImapError, OSError, TimeoutError, EOFError, asyncio.IncompleteReadError) as e:
            worker.error_count += 1
            if len(worker.errors) < 3:
                worker.errors.append(f"{type(e).__name__}: {e}"[:300])
            await worker.drop()
    if worker.client is not None:
        await worker.logout()


def kept_account(number: int) -> int:
    """Kept-logged-in workers 0 and 1 share an account; the others have one each."""
    return 0 if number == 1 else number * 10


async def run_mixed(server: str, port: int, layout: Layout, seconds: float, kept: bool,
                    seed: int, workers: int = WORKERS) -> MixedResult:
    latencies: dict[str, list[float]] = defaultdict(list)
    pool = [Worker(n, port, layout, random.Random(seed * 1000 + n), latencies)
            for n in range(workers)]
    if kept:  # log in before the clock starts: this mode measures the work
        await asyncio.gather(*(w.login(kept_account(w.number)) for w in pool))
        for worker in pool:
            worker.commands = 0
        latencies.clear()
    started = time.monotonic()
    await asyncio.gather(*(_run_worker(w, started + seconds, kept, kept_account(w.number))
                           for w in pool))
    elapsed = time.monotonic() - started
    return MixedResult(server, kept, elapsed, sum(w.commands for w in pool), dict(latencies),
                       [e for w in pool for e in w.errors][:5],
                       sum(w.error_count for w in pool))


# --- filling ----------------------------------------------------------------------------


async def fill_account(port: int, layout: Layout, account: int) -> None:
    client = await ImapClient.connect(port)
    try:
        await client.ok(f'LOGIN "{bench_user(account + 1)}" "{PASSWORD}"')
        for mailbox in MAILBOXES:
            if mailbox != "INBOX":  # postroom makes the special-use ones at account creation
                created = await client.command(f"CREATE {mailbox}")
                if created.status != "OK" and b"[ALREADYEXISTS]" not in created.text:
                    raise ImapError(f"CREATE {mailbox}: {created.text[:120]!r}")
            for message in layout.filled(account, mailbox):
                await client.ok(f"APPEND {mailbox}", message.data)
        await client.command("LOGOUT")
    finally:
        await client.close()


async def fill(port: int, layout: Layout, parallel: int = 4) -> None:
    """Every account's mailboxes, in UID order (one connection per account)."""
    limit = asyncio.Semaphore(parallel)

    async def one(account: int) -> None:
        async with limit:
            await fill_account(port, layout, account)

    await asyncio.gather(*(one(a) for a in range(ACCOUNTS)))


def make_layout(seed: int) -> Layout:
    return Layout(make_corpus(CORPUS_SIZE, seed))


# --- rendering --------------------------------------------------------------------------


def _by(results: Sequence[MixedResult], server: str, kept: bool) -> list[MixedResult]:
    return [r for r in results if r.server == server and r.kept_logged_in == kept]


def mixed_ratio(results: Sequence[MixedResult], kept: bool) -> tuple[float, float, float]:
    ratio = paired_ratios([r.commands_per_s for r in _by(results, "postroom", kept)],
                          [r.commands_per_s for r in _by(results, "Dovecot", kept)])
    return ratio.median, ratio.low, ratio.high


def p50(results: Sequence[MixedResult], server: str, command: str,
        kept: bool | None = None) -> float:
    values = [v for r in results if r.server == server
              and (kept is None or r.kept_logged_in == kept)
              for v in r.latencies.get(command, [])]
    return percentile(values, 0.5)


def render_mixed(results: Sequence[MixedResult]) -> list[str]:
    if not results:
        return ["The mixed-load section did not run.", ""]
    lines = ["| Mode | Dovecot cmd/s | postroom cmd/s | ratio (paired) | target | "
             "errors (Dovecot / postroom) |", "|---|---|---|---|---|---|"]
    for kept, target in ((True, 1.0), (False, 1.5)):
        ours, theirs = _by(results, "postroom", kept), _by(results, "Dovecot", kept)
        if not ours:
            continue
        median, low, high = mixed_ratio(results, kept)
        verdict = "met" if median >= target else f"missed ({median / target:.2f} of it)"
        lines.append(
            f"| {'kept logged in' if kept else 'login per cycle'} | "
            f"{summarize([r.commands_per_s for r in theirs]).render(0)} | "
            f"{summarize([r.commands_per_s for r in ours]).render(0)} | "
            f"{median:.2f}× ({low:.2f}–{high:.2f}) | ≥ {target}× {verdict} | "
            f"{sum(r.error_count for r in theirs)} / {sum(r.error_count for r in ours)} |")
    lines += ["", "Per command, all runs of both modes (ms; p50 / p95):", "",
              "| Command | Dovecot p50 | Dovecot p95 | postroom p50 | postroom p95 | "
              "p50 ratio |", "|---|---|---|---|---|---|"]
    for command in COMMAND_NAMES:
        cells, mid = [], []
        for server in ("Dovecot", "postroom"):
            values = [v for r in results if r.server == server
                      for v in r.latencies.get(command, [])]
            cells += [f"{percentile(values, 0.5) * 1000:.1f}",
                      f"{percentile(values, 0.95) * 1000:.1f}"]
            mid.append(percentile(values, 0.5))
        ratio = f"{mid[1] / mid[0]:.2f}×" if mid[0] else "n/a"
        lines.append(f"| {command} | " + " | ".join(cells) + f" | {ratio} |")
    errors = [e for r in results for e in r.errors]
    if errors:
        lines += ["", "First errors: " + "; ".join(f"`{e[:160]}`" for e in errors[:4])]
    return [*lines, ""]


# --- the section ------------------------------------------------------------------------

ROOT_NAME = "mixed"
POSTROOM_OFFSET = -14_000  # postroom's ports: harness.PORTS − 14,000 (IMAPS 19993)
DOVECOT_PORTS = (31143, 31993, 31110, 31995)  # IMAP, IMAPS, POP3, POP3S


def start_servers(cheap_hash: bool, say: Callable[[str], None]) -> tuple[Dovecot, Postroom]:
    """Dovecot and postroom of this section's own, each with the 100 accounts. With
    `cheap_hash` postroom's accounts get a minimal-cost argon2id (quick iterations only:
    the login-per-cycle figures then flatter postroom)."""
    root = WORK_DIR / ROOT_NAME
    tls_dir = root / "tls"
    tls_dir.mkdir(parents=True, exist_ok=True)
    cert, key = tls_dir / "cert.pem", tls_dir / "key.pem"
    if not cert.exists():
        run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
             "-keyout", str(key), "-out", str(cert), "-subj", "/CN=mixed.bench.test"])
    imap, imaps, pop3, pop3s = DOVECOT_PORTS
    dovecot = Dovecot(users=ACCOUNTS, cert_path=cert, key_path=key, imap_port=imap,
                      imaps_port=imaps, pop3_port=pop3, pop3s_port=pop3s,
                      root=root / "dovecot")
    dovecot.configure()
    dovecot.start()
    postroom = Postroom(root=root / "postroom", port_offset=POSTROOM_OFFSET)
    try:
        postroom.configure()
        addresses = [bench_user(a + 1) for a in range(ACCOUNTS)]
        say(f"  mixed: creating {ACCOUNTS} postroom accounts"
            + (" (cheap hash)" if cheap_hash else " (default argon2id)"))
        postroom.add_accounts([] if cheap_hash else addresses,
                              cheap_hash=addresses if cheap_hash else [])
        postroom.start()
    except BaseException:
        stop_quietly(dovecot)
        postroom.stop()
        raise
    return dovecot, postroom


def measure_mixed(repeats: int, seconds: float, say: Callable[[str], None],
                  seed: int = 22, cheap_hash: bool = False,
                  modes: Sequence[bool] = (True, False)) -> list[MixedResult]:
    """Fill both servers alike, then run each mode `repeats` times per server, the two
    servers alternating (A B B A …) so each pair of runs shares the machine's state."""
    layout = make_layout(seed)
    dovecot, postroom = start_servers(cheap_hash, say)
    results: list[MixedResult] = []
    try:
        ours = postroom.port("imaps")
        if ours is None:
            raise RuntimeError("postroom has no imaps listener")
        for name, port in (("Dovecot", dovecot.imaps_port), ("postroom", ours)):
            started = time.monotonic()
            asyncio.run(fill(port, layout))
            say(f"  mixed: filled {name} in {time.monotonic() - started:.0f}s")
        for kept in modes:
            for repeat in range(repeats):
                order = [("Dovecot", dovecot.imaps_port), ("postroom", ours)]
                if repeat % 2:
                    order.reverse()
                for name, port in order:
                    result = asyncio.run(run_mixed(name, port, layout, seconds, kept,
                                                   seed + repeat))
                    say(f"  mixed {'kept ' if kept else 'login'} {name:<9} "
                        f"{result.commands_per_s:7.1f} cmd/s  errors {result.error_count}"
                        + (f": {result.errors[0]}" if result.errors else ""))
                    results.append(result)
    finally:
        postroom.stop()
        stop_quietly(dovecot)
    return results


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m bench.mixedload",
                                     description="the mixed IMAP load alone (issue 22)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--modes", default="kept,login", help="kept, login or both")
    parser.add_argument("--cheap-hash", action="store_true",
                        help="minimal argon2id for postroom's accounts (quick iterations)")
    args = parser.parse_args(argv)
    modes = [m == "kept" for m in args.modes.split(",") if m in ("kept", "login")]

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    results = measure_mixed(args.repeats, args.seconds, say, cheap_hash=args.cheap_hash,
                            modes=modes)
    print("\n".join(render_mixed(results)))
    return 1 if any(r.error_count for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
