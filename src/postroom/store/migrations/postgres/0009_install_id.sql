-- Issue 25: the install's identity, also kept in DATA_DIR/install-id (store/migrate.py).
-- One row at most; written at start-up, not here, so that a database created just now is
-- told apart from one that holds an install's mail. Independent of migration 0008.
CREATE TABLE install (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    id TEXT NOT NULL,
    created TEXT NOT NULL
);
