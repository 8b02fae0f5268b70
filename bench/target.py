"""postroom as the server under test: its env file, accounts, process and mail counts.

Owns bench/work/postroom/ (config, DATA_DIR), starting `python -m postroom --config FILE
serve` as a subprocess and waiting for its "postroom: ready" line, stopping it by PID
(SIGTERM, then its drain), and counting delivered messages by reading its SQLite DB
read-only (a 250 is not trusted: the mailbox is counted, as for Postfix).

A Postroom may be given its own root (config and DATA_DIR), a port block (harness.PORTS
shifted by `port_offset`) and STORAGE=postgresql with a DATABASE_URL: the nodes section
runs several nodes on one database that way. Delivered mail is then counted in
PostgreSQL over one autocommit connection kept open while counting.

Invariants: it listens on 127.0.0.1 only, on the high ports in harness.PORTS (+ offset);
accounts are added before the server starts (see add_accounts).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.harness import (
    HOST,
    PASSWORD,
    PORTS,
    REPO_DIR,
    WORK_DIR,
    is_port_open,
    run,
    wait_until,
)

COUNT_SQL = """
SELECT count(*) FROM messages
JOIN mailboxes ON mailboxes.id = messages.mailbox_id
JOIN accounts ON accounts.id = mailboxes.account_id
WHERE accounts.address = ? AND mailboxes.name = 'INBOX'
"""


def event_loop() -> str:
    """The loop postroom serves on in this run: asyncio's own (what a default install
    gets) unless POSTROOM_EVENT_LOOP=uvloop asks for the `speed` extra."""
    return "uvloop" if os.environ.get("POSTROOM_EVENT_LOOP", "") == "uvloop" else "asyncio"


def smtp_processes() -> int:
    """SMTP_PROCESSES for the bench: one per core unless POSTROOM_SMTP_PROCESSES says."""
    return int(os.environ.get("POSTROOM_SMTP_PROCESSES", "") or os.cpu_count() or 1)


def imap_processes() -> int:
    """IMAP_PROCESSES for the bench: one per core unless POSTROOM_IMAP_PROCESSES says."""
    return int(os.environ.get("POSTROOM_IMAP_PROCESSES", "") or os.cpu_count() or 1)


@dataclass
class Postroom:
    root: Path = WORK_DIR / "postroom"
    extra_env: dict[str, str] = field(default_factory=dict)
    storage: str = "sqlite"  # or "postgresql" with database_url
    database_url: str = ""
    port_offset: int = 0  # added to every port in harness.PORTS
    process: subprocess.Popen[bytes] | None = None
    listening: dict[str, str] = field(default_factory=dict)
    _stderr_lines: list[str] = field(default_factory=list)
    _ready: threading.Event = field(default_factory=threading.Event)
    _counter: Any = None  # psycopg connection delivered() reuses on PostgreSQL

    @property
    def config_file(self) -> Path:
        return self.root / "postroom.env"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "postroom.sqlite3"

    @property
    def cert_path(self) -> Path:
        return self.data_dir / "tls" / "cert.pem"

    def configure(self) -> None:
        self.stop()
        if self.root.exists():
            shutil.rmtree(self.root)
        self.data_dir.mkdir(parents=True)
        offset = self.port_offset
        settings: dict[str, object] = {
            "OVERRIDE_HOSTNAME": "bench.test",
            "DATA_DIR": str(self.data_dir),
            "LISTEN_ADDRESS": HOST,
            "SMTP_PORT": PORTS.postroom_smtp + offset,
            "SUBMISSION_PORT": PORTS.postroom_submission + offset,
            "SUBMISSIONS_PORT": PORTS.postroom_submissions + offset,
            "IMAP_PORT": PORTS.postroom_imap + offset,
            "IMAPS_PORT": PORTS.postroom_imaps + offset,
            "POP3_PORT": PORTS.postroom_pop3 + offset,
            "POP3S_PORT": PORTS.postroom_pop3s + offset,
            "SSL_TYPE": "self-signed",
            "LOG_LEVEL": "warn",
            # The Postfix reference runs no SPF/DKIM/DMARC milters and has no DNS either;
            # with these on, every message from the bench sender would wait on DNS.
            "ENABLE_POLICYD_SPF": "0",
            "ENABLE_OPENDKIM": "0",
            "ENABLE_OPENDMARC": "0",
            "DNS_NAMESERVERS": f"{HOST}:9",
            # All load comes from one loopback address: per-address limits would refuse
            # the 10,000 IDLE clients (Postfix exempts $mynetworks from its own).
            "MAX_CONNECTIONS": "0",
            "MAX_CONNECTIONS_PER_IP": "0",
            # One SMTP process per core, as Postfix runs an smtpd per connection over all
            # cores (README: SMTP_PROCESSES).
            "SMTP_PROCESSES": str(smtp_processes()),
            # Likewise for IMAP, as Dovecot runs an imap process per connection.
            "IMAP_PROCESSES": str(imap_processes()),
        }
        if self.storage != "sqlite":
            settings |= {"STORAGE": self.storage, "DATABASE_URL": self.database_url}
        settings |= self.extra_env
        lines = [f"{key}={value}" for key, value in settings.items()]
        self.config_file.write_text("# Written by bench/target.py\n" + "\n".join(lines) + "\n")

    def cli(self, *args: str, input_text: str | None = None) -> str:
        argv = [sys.executable, "-m", "postroom", "--config", str(self.config_file), *args]
        return run(argv, input_text=input_text).stdout

    def add_accounts(self, addresses: list[str], cheap_hash: list[str]) -> None:
        """Accounts through postroom's own AccountService, in one process (the CLI would
        pay interpreter start-up per account), before the server starts.

        `cheap_hash` accounts then get an argon2id hash with minimal cost parameters
        through the store API: the IDLE scale run logs in thousands of times, and at
        postroom's default cost (≈0.7 s of CPU per verification here) that alone would
        take hours. Every other account keeps the default, so LOGIN figures are real."""
        asyncio.run(_add_accounts(self.config_file, addresses, cheap_hash))

    def start(self, timeout: float = 60) -> None:
        smtp_port = int(self.extra_env.get("SMTP_PORT",
                                           PORTS.postroom_smtp + self.port_offset))
        if is_port_open(smtp_port):
            raise RuntimeError(f"port {smtp_port} is busy: a postroom left over from an "
                               "earlier run? (`ss -ltnp` names its PID)")
        env = os.environ | {"PYTHONUNBUFFERED": "1", "POSTROOM_EVENT_LOOP": event_loop()}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "postroom", "--config", str(self.config_file), "serve"],
            cwd=REPO_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        ended = threading.Event()
        self._ready.clear()
        threading.Thread(target=self._read_stderr, args=(ended,), daemon=True).start()
        deadline = time.monotonic() + timeout
        while not (self._ready.is_set() or ended.is_set()) and time.monotonic() < deadline:
            ended.wait(0.05)
        if not self._ready.is_set():
            tail = "\n".join(self._stderr_lines[-15:])
            self.stop()
            raise RuntimeError(f"postroom did not become ready:\n{tail}")

    def _read_stderr(self, ended: threading.Event) -> None:
        assert self.process is not None and self.process.stderr is not None
        for raw in self.process.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            self._stderr_lines.append(line)
            del self._stderr_lines[:-200]
            # "<time> INFO postroom: smtp listening on 127.0.0.1:2525" (logsetup.announce)
            if " listening on " in line and " postroom: " in line:
                name, _, address = line.partition(" postroom: ")[2].partition(" listening on ")
                self.listening[name.strip()] = address.strip()
            if " postroom: ready" in line:
                self._ready.set()
        ended.set()

    def port(self, name: str) -> int | None:
        # "127.0.0.1:33993 (implicit TLS)"
        match = re.match(r"\S+:(\d+)", self.listening.get(name, ""))
        return int(match.group(1)) if match else None

    @property
    def pid(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None
        return self.process.pid

    def stop(self, timeout: float = 60) -> None:
        counter, self._counter = self._counter, None
        if counter is not None:
            counter.close()
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def stderr_tail(self, lines: int = 20) -> str:
        return "\n".join(self._stderr_lines[-lines:])

    def delivered(self, address: str) -> int:
        """INBOX messages of one account, read from the DB without taking a write lock."""
        if self.storage == "postgresql":
            return self._delivered_postgres(address)
        connection = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10)
        try:
            row = connection.execute(COUNT_SQL, (address,)).fetchone()
            return int(row[0]) if row else 0
        finally:
            connection.close()

    def _delivered_postgres(self, address: str) -> int:
        if self._counter is None:
            import psycopg

            self._counter = psycopg.connect(self.database_url, autocommit=True)
        row = self._counter.execute(COUNT_SQL.replace("?", "%s"), (address,)).fetchone()
        return int(row[0]) if row else 0

    def wait_delivered(self, address: str, expected: int, timeout: float) -> float:
        return wait_until(lambda: self.delivered(address) >= expected, timeout,
                          f"{expected} messages for {address}", interval=0.05)



async def _add_accounts(config_file: Path, addresses: list[str], cheap: list[str]) -> None:
    from argon2 import PasswordHasher

    from postroom.accounts.service import AccountService
    from postroom.config import load_config
    from postroom.store import open_store
    from postroom.store.changes import ChangeFeed

    config = load_config(config_file).config
    store, _ = await open_store(config, ChangeFeed())
    try:
        service = AccountService(store)
        await asyncio.gather(*(service.add_account(a, PASSWORD) for a in addresses + cheap))
        hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
        for address in cheap:
            await store.set_password(address, "{ARGON2ID}" + hasher.hash(PASSWORD))
    finally:
        await store.close()
