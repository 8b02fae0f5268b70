"""Outbound section (issue 22): queue → remote MX at 10 parallel deliveries, postroom
against Postfix's own smtp(8), both sending to one Postfix `smtp-sink`.

Owns the receiver (smtp-sink on 127.0.0.1: accepts every message, keeps nothing), a
private Postfix that relays everything to it (relayhost [127.0.0.1]:port, no DNS,
smtp_destination_concurrency_limit = 10) and a postroom with RELAY_HOST pointing at it,
and the timing: each queue is filled while delivery is held, then released, and the
rate is messages over the time until the queue is empty.

- Postfix: filled through its smtpd by smtp-source with `defer_transports = smtp` (mail
  waits in the deferred queue); then defer_transports is cleared, `postfix reload`, and
  the clock runs from `postqueue -f` until the queue directories are empty and the
  maillog shows every message `status=sent`.
- postroom: filled through the store's queue role (the rows `QueueWorker.enqueue_message`
  writes: one blob and one row per message), due in a day so the worker leaves them;
  the clock runs from `flush_queue` + SIGUSR1 (what `postroom queue flush` does) until
  the queue table is empty. A row is removed only after the sink's 250.
Runs alternate (A B B A …); ratios are paired within a repeat. Ports: the bench's own −7000.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import secrets
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.harness import (
    HOST,
    PORTS,
    WORK_DIR,
    is_port_open,
    paired_ratios,
    run,
    summarize,
    tree_cpu_seconds,
    wait_until,
)
from bench.references import Postfix, smtp_source_path
from bench.target import Postroom

ROOT = WORK_DIR / "outbound"
OFFSET = -7000
SINK_PORT = PORTS.postfix_smtp + OFFSET - 1000  # 24525
SENDER = "sender@bench.test"
RECIPIENT = "rcpt@remote.test"
PARALLEL = 10
SIZE = 4 * 1024


@dataclass
class OutboundRun:
    server: str
    messages: int
    seconds: float
    cpu_ms_per_msg: float | None = None

    @property
    def per_s(self) -> float:
        return self.messages / self.seconds


@dataclass
class OutboundResult:
    messages: int
    runs: list[OutboundRun] = field(default_factory=list)


def message_bytes(index: int) -> bytes:
    head = (f"From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: outbound {index}\r\n"
            f"Message-ID: <out{index}@bench.test>\r\n"
            "Date: Mon, 7 Dec 2026 06:00:00 +0000\r\n\r\n").encode()
    line = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstu\r\n"
    return head + line * ((SIZE - len(head)) // len(line))


class Sink:
    """Postfix's smtp-sink: answers 250 to everything, stores nothing."""

    def __init__(self, port: int = SINK_PORT) -> None:
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if is_port_open(self.port):
            raise RuntimeError(f"port {self.port} is busy before smtp-sink started")
        binary = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
        ROOT.mkdir(parents=True, exist_ok=True)
        with self.counter_file.open("wb") as out:  # -c: "sess=N quit=N mesg=N" updates
            self.process = subprocess.Popen(
                [binary, "-u", "nobody", "-c", "-m", "200", f"{HOST}:{self.port}", "256"],
                stdout=out, stderr=subprocess.STDOUT)
        wait_until(lambda: is_port_open(self.port), 30, "smtp-sink to listen")

    @property
    def counter_file(self) -> Path:
        return ROOT / "sink.out"

    def received(self) -> int:
        """Messages the sink has answered DATA for (its -c counter)."""
        found = re.findall(rb"mesg=(\d+)", self.counter_file.read_bytes())
        return int(found[-1]) if found else 0

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            process.wait(10)


class RelayingPostfix(Postfix):
    """The bench Postfix, relaying every non-local domain to the sink."""

    def relay_to(self, port: int) -> None:
        self.postconf(f"relayhost = [{HOST}]:{port}",
                      f"smtp_destination_concurrency_limit = {PARALLEL}",
                      "smtp_tls_security_level = none")

    def postconf(self, *settings: str) -> None:
        run(["postconf", "-c", str(self.config_dir), "-e", *settings])

    def hold(self, is_held: bool) -> None:
        self.postconf(f"defer_transports = {'smtp' if is_held else ''}")
        run(["postfix", "-c", str(self.config_dir), "reload"])

    def queued(self) -> int:
        total = 0
        for sub in ("incoming", "active", "deferred", "maildrop", "hold"):
            for _, _, files in os.walk(self.root / "queue" / sub):
                total += len(files)
        return total

    def sent(self) -> int:
        log = self.root / "log" / "maillog"
        return log.read_text(errors="replace").count("status=sent") if log.exists() else 0


def fill_postfix(postfix: RelayingPostfix, count: int) -> None:
    argv = [smtp_source_path(), "-l", str(SIZE), "-m", str(count), "-s", str(PARALLEL),
            "-f", SENDER, "-t", RECIPIENT, f"{HOST}:{postfix.port}"]
    run(argv)
    wait_until(lambda: postfix.queued() >= count and not _has_incoming(postfix), 120,
               "Postfix to queue the mail")


def _has_incoming(postfix: RelayingPostfix) -> bool:
    return any(files for _, _, files in os.walk(postfix.root / "queue" / "incoming"))


def time_postfix(postfix: RelayingPostfix, count: int) -> OutboundRun:
    postfix.hold(False)
    sent_before = postfix.sent()
    pid = postfix.pid
    cpu_before = tree_cpu_seconds(pid) if pid else None
    started = time.monotonic()
    run(["postqueue", "-c", str(postfix.config_dir), "-f"])
    done = wait_until(lambda: postfix.queued() == 0, 600, "Postfix's queue to empty",
                      interval=0.01)
    wait_until(lambda: postfix.sent() - sent_before >= count, 30, "Postfix's maillog")
    cpu = (tree_cpu_seconds(pid) - cpu_before) * 1000 / count if pid and cpu_before else None
    postfix.hold(True)
    return OutboundRun("Postfix", count, done - started, cpu)


async def _fill_postroom(postroom: Postroom, count: int) -> None:
    from postroom.config import load_config
    from postroom.store import open_store
    from postroom.store.api import QueueEntry
    from postroom.store.changes import ChangeFeed

    config = load_config(postroom.config_file).config
    store, blobs = await open_store(config, ChangeFeed())
    now = dt.datetime.now(dt.UTC)
    later = now + dt.timedelta(days=1)
    try:
        for index in range(count):
            raw = message_bytes(index)
            blob_id = await blobs.put(raw)
            await store.enqueue([QueueEntry(
                id=0, message_id=secrets.token_hex(8), sender=SENDER, recipient=RECIPIENT,
                domain="remote.test", blob_id=blob_id, size=len(raw), created=now,
                next_attempt=later, attempts=0, last_error="")])
    finally:
        await store.close()


async def _flush(postroom: Postroom) -> None:
    from postroom.config import load_config
    from postroom.store import open_store
    from postroom.store.changes import ChangeFeed

    store, _ = await open_store(load_config(postroom.config_file).config, ChangeFeed())
    try:
        await store.flush_queue(dt.datetime.now(dt.UTC))
    finally:
        await store.close()


def postroom_queued(postroom: Postroom) -> int:
    connection = sqlite3.connect(f"file:{postroom.db_path}?mode=ro", uri=True, timeout=10)
    try:
        return int(connection.execute("SELECT count(*) FROM queue").fetchone()[0])
    finally:
        connection.close()


def time_postroom(postroom: Postroom, count: int) -> OutboundRun:
    asyncio.run(_fill_postroom(postroom, count))
    pid = postroom.pid
    assert pid is not None
    cpu_before = tree_cpu_seconds(pid)
    started = time.monotonic()
    asyncio.run(_flush(postroom))
    os.kill(pid, signal.SIGUSR1)
    done = wait_until(lambda: postroom_queued(postroom) == 0, 600,
                      "postroom's queue to empty", interval=0.01)
    cpu = (tree_cpu_seconds(pid) - cpu_before) * 1000 / count
    return OutboundRun("postroom", count, done - started, cpu)


def measure_outbound(count: int, repeats: int,
                     say: Callable[[str], None] = print) -> OutboundResult:
    """Start the sink, Postfix and postroom under bench/work/outbound/, run, stop."""
    sink = Sink()
    postfix = RelayingPostfix(users=1, port=PORTS.postfix_smtp + OFFSET, root=ROOT / "postfix")
    postroom = Postroom(root=ROOT / "postroom", port_offset=OFFSET, extra_env={
        "RELAY_HOST": f"[{HOST}]:{SINK_PORT}", "SMTP_PROCESSES": "1", "MTA_STS_PORT": "0"})
    result = OutboundResult(count)
    try:
        sink.start()
        postfix.configure()
        postfix.relay_to(SINK_PORT)
        postfix.start()
        postfix.hold(True)
        postroom.configure()
        postroom.start()
        for repeat in range(repeats):
            order = ["Postfix", "postroom"] if repeat % 2 == 0 else ["postroom", "Postfix"]
            for name in order:
                before = sink.received()
                if name == "Postfix":
                    fill_postfix(postfix, count)
                    outcome = time_postfix(postfix, count)
                else:
                    outcome = time_postroom(postroom, count)
                # Every message reached the sink (none bounced or lost on the way).
                wait_until(lambda b=before: sink.received() - b >= count, 30,  # type: ignore[misc]
                           f"the sink to count {count} messages from {name}")
                result.runs.append(outcome)
                say(f"  outbound {name:<9} {outcome.per_s:7.1f} msg/s")
    finally:
        postroom.stop()
        postfix.stop()
        sink.stop()
    return result


def render_outbound(out: dict[str, object]) -> list[str]:
    result = out["result"]
    assert isinstance(result, OutboundResult)
    rows, rates = [], {}
    for name in ("Postfix", "postroom"):
        runs = [r for r in result.runs if r.server == name]
        rates[name] = [r.per_s for r in runs]
        cpu = [r.cpu_ms_per_msg for r in runs if r.cpu_ms_per_msg is not None]
        rows.append([name, summarize(rates[name]).render(), summarize(cpu).render(2)])
    ratio = paired_ratios(rates["postroom"], rates["Postfix"])
    verdict = "met" if ratio.count and ratio.median >= 1.0 else "MISSED"
    return [
        "## Outbound: queue → remote MX (issue 22)", "",
        f"{result.messages} messages of {SIZE // 1024} KB per run, one recipient each, "
        f"from a full queue to Postfix's smtp-sink on 127.0.0.1 at up to {PARALLEL} "
        "parallel connections (Postfix: relayhost and smtp_destination_concurrency_limit; "
        "postroom: RELAY_HOST, its worker opens up to 10 connections per destination). "
        "Rate: messages over the time from the release of the queue (`postqueue -f`; "
        "postroom's flush + SIGUSR1) until it is empty; the sink's counter must show every "
        "message. CPU: the server's processes (Postfix: master and its children).", "",
        "| Server | msg/s | CPU ms/msg |", "|---|---|---|",
        *[f"| {' | '.join(row)} |" for row in rows], "",
        f"- Issue 22, outbound at {PARALLEL} parallel deliveries ≥ 1.0× Postfix: "
        f"{ratio.render(2)}× — {verdict}", "",
    ]


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    result = measure_outbound(args.messages, args.repeats)
    print("\n".join(render_outbound({"result": result})))


if __name__ == "__main__":
    main()
