"""Schema migrations: numbered SQL files applied in order, each exactly once.

Owns the migration file convention and the ordering logic, not any database driver (those
live in the backend modules, ARCHITECTURE.md rule 2). Files are
`store/migrations/<backend>/NNNN_description.sql`, loaded as package resources so they
work from a wheel. Version numbers are shared across backends: version N is the same
logical schema in SQLite and PostgreSQL.

Invariants: versions are unique positive integers; a backend records each applied version
in its `schema_version` table in the same transaction as the migration itself, so running
`migrate` again (or from two processes at once) applies nothing twice. A migration does
not depend on the one numbered just before it existing (0008 and 0009 were written side
by side): `pending_migrations` applies whatever is missing, in version order.

Also owns the install identity checked at start-up (issue 25): a random id written once,
both in the database (`install`, migration 0009) and in `DATA_DIR/install-id`. A store
opened over a DATA_DIR that holds mail (the id file, or body files under blobs/) with a
database that is missing, empty or another install's refuses to open (`InstallMismatch`,
one line): a blank database would otherwise answer real users' mail with "relay access
denied" while their mail sits in blobs/. `install_verdict` is the decision table.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Protocol

from postroom.store.errors import InstallMismatch

log = logging.getLogger("postroom.store")
INSTALL_ID_FILE = "install-id"

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

SCHEMA_VERSION_DDL = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied TEXT NOT NULL)"
)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


class MigrationTarget(Protocol):
    """What a backend provides so `migrate` can drive it."""

    async def applied_versions(self) -> set[int]:
        """Create `schema_version` if needed and return the versions recorded in it."""
        ...

    async def apply(self, migration: Migration) -> bool:
        """Run one migration and record it atomically; False if it was already recorded."""
        ...


def load_migrations(backend: str) -> list[Migration]:
    """Every migration shipped for `backend`, in version order."""
    folder = resources.files("postroom.store.migrations").joinpath(backend)
    found: dict[int, Migration] = {}
    for entry in folder.iterdir():
        match = _FILE_NAME.match(entry.name)
        if match is None:
            continue
        version = int(match.group(1))
        if version in found:
            raise ValueError(f"two {backend} migrations numbered {version}")
        found[version] = Migration(version, match.group(2), entry.read_text(encoding="utf-8"))
    return [found[version] for version in sorted(found)]


def pending_migrations(migrations: list[Migration], applied: set[int]) -> list[Migration]:
    return [migration for migration in migrations if migration.version not in applied]


async def migrate(target: MigrationTarget, backend: str) -> list[int]:
    """Bring the schema up to date; returns the versions applied by this call."""
    applied = await target.applied_versions()
    return [
        migration.version
        for migration in pending_migrations(load_migrations(backend), applied)
        if await target.apply(migration)
    ]


# -- install identity -------------------------------------------------------------------


class InstallTarget(Protocol):
    """What a backend provides so `check_install` can read and record its install id."""

    async def install_state(self) -> tuple[str | None, bool]:
        """The install id recorded in the database (None when none is), and whether the
        database holds any mail (accounts, messages or queued mail)."""
        ...

    async def record_install_id(self, install_id: str) -> str:
        """Record `install_id` unless one is recorded already; the id recorded now."""
        ...


@dataclass(frozen=True, slots=True)
class InstallState:
    database_id: str | None
    file_id: str | None  # DATA_DIR/install-id
    database_has_mail: bool
    has_blob_files: bool  # message bodies under DATA_DIR/blobs


@dataclass(frozen=True, slots=True)
class Where:
    """Names for the one-line refusals: the database and DATA_DIR."""

    database: str
    data_dir: Path


def install_verdict(state: InstallState, where: Where) -> str:
    """The install id both sides must hold from now on, or InstallMismatch.

    - both ids, equal: this install; different: another install's database.
    - no id in DATA_DIR: the database's, unless DATA_DIR holds bodies the empty
      database cannot name (a blank database over old mail).
    - an id in DATA_DIR only: a database holding mail from before migration 0009 (or a
      SQLite store copied to PostgreSQL) takes it; an empty one is refused.
    - no id anywhere: a new one (a first start, or a first start after upgrading), unless
      DATA_DIR holds bodies and the database no mail.
    """
    if state.database_id is not None and state.file_id is not None:
        if state.database_id != state.file_id:
            raise InstallMismatch(
                f"refusing to start: the database {where.database} belongs to install "
                f"{state.database_id}, but DATA_DIR {where.data_dir} belongs to install "
                f"{state.file_id}; restore this install's database, or move "
                f"{where.data_dir} aside to start anew")
        return state.database_id
    is_blank = not state.database_has_mail
    if is_blank and (state.file_id is not None or state.has_blob_files):
        raise InstallMismatch(_blank_database(state, where))
    return state.database_id or state.file_id or secrets.token_hex(16)


def _blank_database(state: InstallState, where: Where, missing: bool = False) -> str:
    held = [f"install-id {state.file_id}"] if state.file_id else []
    if state.has_blob_files:
        held.append("message files in blobs/")
    return (f"refusing to start: DATA_DIR {where.data_dir} holds an install's mail "
            f"({', '.join(held)}) but the database {where.database} is "
            f"{'missing' if missing else 'empty'}; restore the database from a backup, "
            f"or move {where.data_dir} aside to start a new install")


def refuse_missing_database(database: Path, data_dir: Path) -> None:
    """Before SQLite creates `database`: refuse when it is missing (or zero bytes) while
    DATA_DIR holds mail, so a refused start leaves no blank database behind."""
    if database.exists() and database.stat().st_size > 0:
        return
    state = InstallState(None, read_install_id(data_dir), False,
                         has_blob_files(data_dir / "blobs"))
    if state.file_id is not None or state.has_blob_files:
        raise InstallMismatch(_blank_database(state, Where(str(database), data_dir),
                                              missing=True))


async def check_install(target: InstallTarget, data_dir: Path, database: str) -> str:
    """Compare the database's install id with DATA_DIR's, record it where it is
    missing, and return it; InstallMismatch when they do not belong together."""
    database_id, has_mail = await target.install_state()
    file_id, has_blobs = await asyncio.to_thread(
        lambda: (read_install_id(data_dir), has_blob_files(data_dir / "blobs")))
    state = InstallState(database_id, file_id, has_mail, has_blobs)
    install_id = install_verdict(state, Where(database, data_dir))
    if database_id is None:
        if file_id is not None:
            log.warning("database %s had no install id: recorded %s from %s", database,
                        file_id, data_dir / INSTALL_ID_FILE)
        # Two nodes starting on a new database: the first id recorded wins.
        install_id = await target.record_install_id(install_id)
    if file_id != install_id:
        await asyncio.to_thread(write_install_id, data_dir, install_id)
    return install_id


def read_install_id(data_dir: Path) -> str | None:
    try:
        text = (data_dir / INSTALL_ID_FILE).read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    return text or None


def write_install_id(data_dir: Path, install_id: str) -> None:
    """Written whole or not at all: temp file, fsync, rename, directory fsync."""
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = data_dir / f".{INSTALL_ID_FILE}.tmp"
    with open(tmp, "w", encoding="ascii") as handle:
        handle.write(install_id + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, data_dir / INSTALL_ID_FILE)
    fd = os.open(data_dir, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def has_blob_files(blob_root: Path) -> bool:
    """Whether any message body file is under `blob_root` (its fan-out folders; tmp/
    holds only unfinished writes). Stops at the first one found."""
    if not blob_root.is_dir():
        return False
    for folder in blob_root.iterdir():
        if folder.name != "tmp" and folder.is_dir() and any(folder.iterdir()):
            return True
    return False
