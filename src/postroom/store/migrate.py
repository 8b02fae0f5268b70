"""Schema migrations: numbered SQL files applied in order, each exactly once.

Owns the migration file convention and the ordering logic, not any database driver (those
live in the backend modules, ARCHITECTURE.md rule 2). Files are
`store/migrations/<backend>/NNNN_description.sql`, loaded as package resources so they
work from a wheel. Version numbers are shared across backends: version N is the same
logical schema in SQLite and PostgreSQL.

Invariants: versions are unique positive integers; a backend records each applied version
in its `schema_version` table in the same transaction as the migration itself, so running
`migrate` again (or from two processes at once) applies nothing twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Protocol

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
