"""`nodes` section (issue 10): postroom on SQLite against PostgreSQL with one and two nodes.

Owns the three configurations, their servers and the interleaved runs:

- SQLite, 1 node: the usual target (bench/target.py defaults) on its own root and ports;
- PostgreSQL, 1 node: STORAGE=postgresql on a throwaway cluster (bench/pg.py);
- PostgreSQL, 2 nodes: that node plus a second `postroom serve` with its own DATA_DIR and
  ports, on the same database.

Figures: SMTP 4 KB through smtp-source at 10 sessions in total (one smtp-source per node,
the sessions and messages split evenly, started together; the rate is all messages over
the time until the recipient's INBOX holds them all, counted in the database), and the
IMAP "logged in" mix of imap_load at 10 clients (split evenly over the nodes; logins
before the clock starts, as in imap_load.run_mix).

Invariants: every server is started here and stopped here (also on errors); runs go
A B C, B C A, C A B, … so none always follows the same one and the ratio to SQLite is
taken within one repeat; all three configurations stay up for the whole section (an idle
node costs next to nothing) so no run pays another's start-up, and each gets one
unrecorded warm-up round first (its pool's connections, PostgreSQL backends and caches).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.harness import (
    HOST,
    WORK_DIR,
    bench_user,
    tree_cpu_seconds,
    wait_until,
)
from bench.imap_load import MixClient, MixResult, fill_mailbox, mailbox_messages
from bench.pg import PgCluster
from bench.references import smtp_source_path
from bench.smtp_load import CLIENT_NAME, SENDER
from bench.target import Postroom

SQLITE_1 = "SQLite, 1 node"
POSTGRES_1 = "PostgreSQL, 1 node"
POSTGRES_2 = "PostgreSQL, 2 nodes"
CONFIGURATIONS = (SQLITE_1, POSTGRES_1, POSTGRES_2)
# One recipient per configuration, so every INBOX grows alike over the repeats.
SMTP_RECIPIENTS = {SQLITE_1: bench_user(61), POSTGRES_1: bench_user(62),
                   POSTGRES_2: bench_user(63)}
IMAP_USERS = [bench_user(i) for i in range(71, 81)]
SESSIONS = 10
MESSAGE_BYTES = 4 * 1024
ROOT = WORK_DIR / "nodes"


@dataclass(frozen=True, slots=True)
class NodesSmtpRun:
    config: str
    messages: int
    delivered_per_s: float
    postroom_cpu_ms_per_msg: float  # summed over the configuration's nodes
    database_cpu_ms_per_msg: float | None  # the PostgreSQL server, all its processes


@dataclass(frozen=True, slots=True)
class Configuration:
    label: str
    nodes: tuple[Postroom, ...]
    database_pid: Callable[[], int | None]


class NodesServers:
    """The SQLite node, the PostgreSQL cluster and its two nodes. Their port blocks are
    harness.PORTS minus 10,000/11,000/12,000 (23xxx, 22xxx, 21xxx): apart from the other
    sections' postroom, and below Linux's ephemeral range (32768–60999), so tests running
    beside the bench (port 0 listeners, outgoing connections) cannot hold them."""

    def __init__(self) -> None:
        self.cluster = PgCluster()
        self.sqlite = Postroom(root=ROOT / "sqlite", port_offset=-10_000)
        self.node_a = Postroom(root=ROOT / "pg-a", port_offset=-11_000,
                               storage="postgresql")
        self.node_b = Postroom(root=ROOT / "pg-b", port_offset=-12_000,
                               storage="postgresql")

    def start(self, progress: Callable[[str], None]) -> None:
        accounts = list(SMTP_RECIPIENTS.values()) + IMAP_USERS
        self.sqlite.configure()
        # Cheap hashes: the mix logs in before its clock starts, so the hash cost is no
        # part of any figure here, and at the default cost the logins would take longer
        # than the measured runs (README.md: password hashing).
        self.sqlite.add_accounts([], cheap_hash=accounts)
        self.sqlite.start()
        progress(f"  nodes: starting PostgreSQL on {HOST}:{self.cluster.port}")
        self.cluster.start()
        url = self.cluster.create_database("postroom")
        for node in (self.node_a, self.node_b):
            node.database_url = url
            node.configure()
        self.node_a.add_accounts([], cheap_hash=accounts)  # one database for both nodes
        self.node_a.start()  # first alone: it applies the migrations
        self.node_b.start()

    def stop(self) -> None:
        for node in (self.node_b, self.node_a, self.sqlite):
            with contextlib.suppress(Exception):  # stop the others and the cluster anyway
                node.stop()
        self.cluster.stop()

    def configurations(self) -> list[Configuration]:
        return [Configuration(SQLITE_1, (self.sqlite,), lambda: None),
                Configuration(POSTGRES_1, (self.node_a,), lambda: self.cluster.pid),
                Configuration(POSTGRES_2, (self.node_a, self.node_b),
                              lambda: self.cluster.pid)]


def _pids(config: Configuration) -> list[int]:
    pids = []
    for node in config.nodes:
        if node.pid is None:
            raise RuntimeError(f"{config.label}: a node is not running:\n"
                               f"{node.stderr_tail()}")
        pids.append(node.pid)
    return pids


def _listener(node: Postroom, name: str) -> int:
    port = node.port(name)
    if port is None:
        raise RuntimeError(f"postroom at {node.root} has no {name} listener")
    return port


def deliver_burst(tool: str, config: Configuration, messages: int,
                  timeout: float = 600) -> NodesSmtpRun:
    """One smtp-source per node at once; time until the INBOX (in the DB) holds them all."""
    recipient, nodes = SMTP_RECIPIENTS[config.label], config.nodes
    share, sessions = messages // len(nodes), SESSIONS // len(nodes)
    before = nodes[0].delivered(recipient)
    pids, database = _pids(config), config.database_pid()
    cpu_before = sum(tree_cpu_seconds(pid) for pid in pids)  # with SMTP workers
    database_before = tree_cpu_seconds(database) if database else 0.0
    started = time.monotonic()
    processes = [subprocess.Popen(
        [tool, "-l", str(MESSAGE_BYTES), "-m", str(share), "-s", str(sessions), "-f", SENDER,
         "-t", recipient, "-M", CLIENT_NAME, f"{HOST}:{_listener(node, 'smtp')}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for node in nodes]
    outputs = [process.communicate(timeout=timeout)[0] for process in processes]
    for process, output in zip(processes, outputs, strict=True):
        if process.returncode != 0:
            raise RuntimeError(f"smtp-source against {config.label} failed: "
                               f"{output.strip()[-400:]}")
    total = share * len(nodes)
    delivered_at = wait_until(lambda: nodes[0].delivered(recipient) >= before + total,
                              timeout, f"{total} deliveries on {config.label}", interval=0.01)
    cpu = sum(tree_cpu_seconds(pid) for pid in pids) - cpu_before
    landed = nodes[0].delivered(recipient) - before
    if landed != total:  # more than sent: a message stored twice (by both nodes?)
        raise RuntimeError(f"{config.label}: {landed} messages in the INBOX, {total} sent")
    database_cpu = tree_cpu_seconds(database) - database_before if database else None
    return NodesSmtpRun(
        config=config.label, messages=total,
        delivered_per_s=total / (delivered_at - started),
        postroom_cpu_ms_per_msg=cpu * 1000 / total,
        database_cpu_ms_per_msg=None if database_cpu is None else database_cpu * 1000 / total)


async def run_logged_in_mix(label: str, ports: Sequence[int], users: Sequence[str],
                            seconds: float) -> MixResult:
    """imap_load's logged-in mix with client i on node i mod len(ports): everyone logs in
    first, on every node, and only then the clock starts."""
    latencies: dict[str, list[float]] = defaultdict(list)
    clients = [MixClient(ports[seed % len(ports)], user, seed, latencies)
               for seed, user in enumerate(users)]
    connections = await asyncio.gather(*(client.open() for client in clients))
    for client in clients:
        client.operations = 0
    latencies.clear()
    started = time.monotonic()
    deadline = started + seconds
    outcomes = await asyncio.gather(
        *(client.run_logged_in(connection, deadline)
          for client, connection in zip(clients, connections, strict=True)),
        return_exceptions=True)
    elapsed = time.monotonic() - started
    errors = [f"{type(o).__name__}: {o}" for o in outcomes if isinstance(o, BaseException)]
    return MixResult(label, len(users), True, elapsed, sum(c.operations for c in clients),
                     dict(latencies), errors)


async def _fill(servers: NodesServers) -> None:
    """A 100-message INBOX per IMAP account: once on SQLite, once in the shared database."""
    messages = mailbox_messages(100)
    for node in (servers.sqlite, servers.node_a):
        port = _listener(node, "imaps")
        await asyncio.gather(*(fill_mailbox(port, user, messages, connections=1)
                               for user in IMAP_USERS))


def _warm_up(tool: str, configurations: Sequence[Configuration]) -> None:
    for config in configurations:
        deliver_burst(tool, config, 40)
        ports = [_listener(node, "imaps") for node in config.nodes]
        asyncio.run(run_logged_in_mix(config.label, ports, IMAP_USERS, 1.0))


def _rotated(items: Sequence[Configuration], repeat: int) -> list[Configuration]:
    shift = repeat % len(items)
    return [*items[shift:], *items[:shift]]


def measure_nodes(quick: bool, repeats: int, imap_seconds: float,
                  progress: Callable[[str], None]) -> dict[str, Any]:
    """Start the servers, run every figure `repeats` times interleaved, stop them all."""
    messages = 400 if quick else 1200
    tool = smtp_source_path()
    servers = NodesServers()
    out: dict[str, Any] = {"smtp": [], "imap": [], "messages": messages,
                           "imap_seconds": imap_seconds}
    try:
        servers.start(progress)
        asyncio.run(_fill(servers))
        configurations = servers.configurations()
        _warm_up(tool, configurations)
        for repeat in range(repeats):
            for config in _rotated(configurations, repeat):
                run = deliver_burst(tool, config, messages)
                progress(f"  nodes smtp {config.label:<20} {run.delivered_per_s:7.1f} msg/s "
                         f"in mailbox, postroom {run.postroom_cpu_ms_per_msg:.2f} ms/msg")
                out["smtp"].append(run)
            for config in _rotated(configurations, repeat):
                ports = [_listener(node, "imaps") for node in config.nodes]
                mix = asyncio.run(run_logged_in_mix(config.label, ports, IMAP_USERS,
                                                    imap_seconds))
                progress(f"  nodes imap {config.label:<20} {mix.ops_per_s:7.1f} ops/s"
                         + (f"  errors: {mix.errors[0]}" if mix.errors else ""))
                out["imap"].append(mix)
    finally:
        servers.stop()
    return out
