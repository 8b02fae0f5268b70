"""A throwaway PostgreSQL cluster for the `nodes` section, from Debian's binaries.

Owns bench/work/pg/ (initdb'd afresh each run), starting the cluster with pg_ctl on
127.0.0.1:PORTS.postgres (TCP only, no Unix socket), creating the database postroom's
nodes share, reading the postmaster's PID (its CPU is reported), and stopping it with
`pg_ctl stop` at the end.

Invariants: it listens on 127.0.0.1 only; the configuration is PostgreSQL's default apart
from the address and port, so fsync and synchronous_commit stay on (postroom commits
before its 250, and on SQLite it fsyncs: both are durable). PostgreSQL refuses to run as
root, so under root the binaries run as the `postgres` OS user that Debian's package
creates (as tests/postgres/pgserver.py does; that module is pytest-bound and runs with
fsync off, so it is not reused here).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from bench.harness import HOST, PORTS, WORK_DIR, is_port_open, run

SERVER_USER = "postgres"


def find_bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/N/bin (Debian's layout), else initdb on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda path: int(path.split("/")[4]) if path.split("/")[4].isdigit()
                   else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def server_version() -> str:
    """`postgres --version` for the machine table, or "not installed"."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        return "not installed"
    text = run([str(bin_dir / "postgres"), "--version"], check=False).stdout.strip()
    return text.removeprefix("postgres (PostgreSQL) ") or "unknown"


def _as_server_user(argv: list[str]) -> list[str]:
    return ["runuser", "-u", SERVER_USER, "--", *argv] if os.geteuid() == 0 else argv


@dataclass
class PgCluster:
    root: Path = WORK_DIR / "pg"
    port: int = PORTS.postgres
    bin_dir: Path | None = field(default_factory=find_bin_dir)
    _running: bool = False

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        # Trust authentication, and only on 127.0.0.1: a scratch cluster for one run.
        return f"postgresql://{SERVER_USER}@{HOST}:{self.port}/{database}"

    def _tool(self, name: str) -> str:
        if self.bin_dir is None:
            raise RuntimeError("PostgreSQL binaries not found: apt-get install postgresql")
        return str(self.bin_dir / name)

    def start(self) -> None:
        self._stop_leftover()
        if is_port_open(self.port):
            raise RuntimeError(f"port {self.port} is busy: another PostgreSQL? "
                               "(`ss -ltnp` names its PID)")
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True)
        if os.geteuid() == 0:
            user = pwd.getpwnam(SERVER_USER)
            os.chown(self.root, user.pw_uid, user.pw_gid)
        run(_as_server_user([self._tool("initdb"), "-D", str(self.data_dir), "-U", SERVER_USER,
                             "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"]))
        options = f"-p {self.port} -c listen_addresses={HOST} -c unix_socket_directories=''"
        run(_as_server_user([self._tool("pg_ctl"), "-D", str(self.data_dir), "-o", options,
                             "-l", str(self.root / "server.log"), "-w", "-t", "60", "start"]))
        self._running = True

    def _stop_leftover(self) -> None:
        """A cluster this bench started in an earlier run that died before stopping it."""
        if (self.data_dir / "postmaster.pid").exists():
            run(_as_server_user([self._tool("pg_ctl"), "-D", str(self.data_dir), "-m", "fast",
                                 "-w", "stop"]), check=False)

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"'.encode())
        return self.url(name)

    @property
    def pid(self) -> int | None:
        """The postmaster's PID (first line of postmaster.pid) while it runs."""
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
            if Path(f"/proc/{pid}").exists():
                return pid
        return None

    def stop(self) -> None:
        if not self._running:
            return
        self._running = False
        run(_as_server_user([self._tool("pg_ctl"), "-D", str(self.data_dir), "-m", "fast",
                             "-w", "-t", "60", "stop"]), check=False)
