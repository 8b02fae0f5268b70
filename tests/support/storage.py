"""Which storage backend the servers under test keep their mail in.

SQLite (and blob files) under DATA_DIR by default; POSTROOM_TEST_STORAGE=postgresql makes
every config from `make_config` and every env file from `write_env` a PostgreSQL one, so
`make test` can prove the protocol suites pass on both backends.

Each DATA_DIR gets a database of its own, as under SQLite, where the database file lives in
DATA_DIR: the same DATA_DIR twice in one test (a restart, a second config) means the same
mail, two DATA_DIRs (two nodes) mean two servers' worth. The databases come migrated from
tests/postgres/pgserver.py and go back to it when the test ends (`release_databases`, called
by an autouse fixture in tests/conftest.py), emptied for the next test: creating one per
test would cost more than the test. Tests about SQLite or files as such carry the
`sqlite_only` marker and are skipped under this pass.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

STORAGE_ENV = "POSTROOM_TEST_STORAGE"

_databases: dict[Path, str] = {}  # DATA_DIR -> URL of the database leased for it
_leases = contextlib.ExitStack()


def is_postgres_chosen() -> bool:
    return os.environ.get(STORAGE_ENV, "sqlite").strip().lower() == "postgresql"


def storage_settings(data_dir: object) -> dict[str, object]:
    """STORAGE and DATABASE_URL for a config over `data_dir`; empty when SQLite is chosen."""
    if not is_postgres_chosen():
        return {}
    key = Path(str(data_dir)).absolute()
    url = _databases.get(key)
    if url is None:
        # Imported here: psycopg and the throwaway server only matter to this pass.
        from tests.postgres.pgserver import new_database

        url = _databases[key] = _leases.enter_context(new_database())
    return {"STORAGE": "postgresql", "DATABASE_URL": url}


def release_databases() -> None:
    """Hand every database leased since the last call back to pgserver (emptied there)."""
    _databases.clear()
    _leases.close()
