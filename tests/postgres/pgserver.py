"""A PostgreSQL for tests: `$POSTROOM_TEST_DATABASE_URL` when set, else a throwaway server.

The throwaway server is initdb'd into a temp directory and started with pg_ctl on a free
127.0.0.1 port, TCP only, with fsync off (its data dies with the test run). PostgreSQL
refuses to run as root, so under root the binaries run as the `postgres` OS user (Debian's
package creates it). One server per test process (pytest-xdist workers each get their
own); every test gets a fresh database from `new_database`, dropped again when it is done
so a shared `$POSTROOM_TEST_DATABASE_URL` server does not fill up.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import graphlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from postroom.store.migrate import SCHEMA_VERSION_DDL, load_migrations

ENV_URL = "POSTROOM_TEST_DATABASE_URL"


@dataclass(frozen=True, slots=True)
class PgServer:
    admin_url: str  # a database we may CREATE DATABASE from

    def url_for(self, dbname: str) -> str:
        if self.admin_url.startswith(("postgresql://", "postgres://")):
            parts = urllib.parse.urlsplit(self.admin_url)
            return urllib.parse.urlunsplit(parts._replace(path="/" + dbname))
        return make_conninfo(self.admin_url, dbname=dbname)

    def create_database(self, template: str = "template0") -> str:
        name = f"postroom_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            # FILE_COPY: for a small template, much faster than PostgreSQL 15's WAL_LOG.
            strategy = " STRATEGY FILE_COPY" if conn.info.server_version >= 150000 else ""
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"{strategy}')
        return name

    def create_migrated_template(self) -> str:
        """A database holding the current schema, to copy per test (migrating costs more)."""
        name = self.create_database()
        with psycopg.connect(self.url_for(name), autocommit=True) as conn:
            conn.execute(SCHEMA_VERSION_DDL)
            for migration in load_migrations("postgres"):
                conn.execute(migration.sql.encode())
                conn.execute("INSERT INTO schema_version (version, name, applied)"
                             " VALUES (%s, %s, 'template')", (migration.version, migration.name))
        return name

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _as_server_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _start_throwaway(bin_dir: Path) -> tuple[PgServer, Path]:
    root = Path(tempfile.mkdtemp(prefix="postroom-pg-"))
    data = root / "data"
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
    subprocess.run(_as_server_user([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres",
                                    "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"]),
                   check=True, capture_output=True, timeout=120)
    last_error = ""
    for _ in range(3):  # the free port may be taken between the probe and the bind
        port = _free_port()
        options = (f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
                   " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
                   " -c max_connections=300")
        started = subprocess.run(
            _as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options,
                             "-l", str(root / "server.log"), "-w", "-t", "60", "start"]),
            capture_output=True, text=True, timeout=90)
        if started.returncode == 0:
            return PgServer(f"postgresql://postgres@127.0.0.1:{port}/postgres"), data
        last_error = started.stdout + started.stderr
    raise RuntimeError(f"could not start PostgreSQL: {last_error}")


def _stop_throwaway(bin_dir: Path, data: Path) -> None:
    subprocess.run(_as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                                    "stop"]), capture_output=True, timeout=60)
    shutil.rmtree(data.parent, ignore_errors=True)


_server: PgServer | None = None


def _drop_leftovers(server: PgServer) -> None:
    for name in [*_reusable, *([_template] if _template else [])]:
        with contextlib.suppress(psycopg.Error):
            server.drop_database(name)


def get_server() -> PgServer:
    """The process-wide test server, started on first use; skips when none is available."""
    global _server
    if _server is not None:
        return _server
    if os.environ.get(ENV_URL):
        _server = PgServer(os.environ[ENV_URL])
        atexit.register(_drop_leftovers, _server)  # a shared server: leave nothing behind
        return _server
    bin_dir = _bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL binaries not installed (apt-get install postgresql) and "
                    f"${ENV_URL} not set")
    server, data = _start_throwaway(bin_dir)
    atexit.register(_stop_throwaway, bin_dir, data)
    _server = server
    return server


_template: str | None = None
_reusable: list[str] = []  # migrated databases emptied after use, ready for the next test


_emptying_sql: bytes | None = None  # the same for every migrated database: built once


def _build_emptying_sql(conn: psycopg.Connection[tuple[object, ...]]) -> bytes:
    """DELETE every table but schema_version, referencing tables first, then restart the
    sequences: TRUNCATE … RESTART IDENTITY's effect at a twentieth of its cost on tables
    this small (TRUNCATE makes new files for every table and index)."""
    tables = {str(row[0]) for row in conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        " AND tablename <> 'schema_version'")}
    order: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for table in tables:
        order.add(table)
    for child, parent in conn.execute(
            "SELECT conrelid::regclass::text, confrelid::regclass::text FROM pg_constraint"
            " WHERE contype = 'f' AND connamespace = 'public'::regnamespace"):
        if child != parent and {child, parent} <= tables:
            order.add(str(parent), str(child))  # the parent waits for its children
    sequences = [row[0] for row in conn.execute(
        "SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'")]
    return ("".join(f'DELETE FROM "{table}";' for table in order.static_order())
            + "".join(f"SELECT setval('\"{seq}\"', 1, false);" for seq in sequences)).encode()


def _empty_database(server: PgServer, name: str) -> bool:
    """Empty a used database for the next test: far cheaper than a new one (~0.2 s).
    Connections a test left behind are ended first, so none can write into the next test."""
    global _emptying_sql
    try:
        with psycopg.connect(server.url_for(name), autocommit=True) as conn:
            conn.execute("SET lock_timeout = '5s'")
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                         " WHERE datname = current_database() AND pid <> pg_backend_pid()")
            if _emptying_sql is None:
                _emptying_sql = _build_emptying_sql(conn)
            conn.execute(_emptying_sql)  # several statements: one implicit transaction
        return True
    except psycopg.Error:
        return False


@contextlib.contextmanager
def new_database(*, migrated: bool = True) -> Iterator[str]:
    """A connection URL to a database of its own for one test: empty, or already holding
    the schema (copied from a template migrated once per process, then reused)."""
    global _template
    server = get_server()
    if not migrated:
        name = server.create_database()
    elif _reusable:
        name = _reusable.pop()
    else:
        if _template is None:
            _template = server.create_migrated_template()
        name = server.create_database(_template)
    try:
        yield server.url_for(name)
    finally:
        if migrated and _empty_database(server, name):
            _reusable.append(name)
        else:
            with contextlib.suppress(psycopg.Error):
                server.drop_database(name)
