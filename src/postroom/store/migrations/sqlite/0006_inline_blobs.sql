-- postroom schema, version 6 (SQLite), issue 8: bodies of up to 64 KiB live here, written
-- in the transaction of the row that names them (store/sqliteblobs.py says why). Larger
-- bodies stay files under DATA_DIR/blobs. A row goes in the transaction that removes the
-- last message or queue entry referring to its id.

CREATE TABLE blob_data (
    id TEXT PRIMARY KEY,
    data BLOB NOT NULL
);
