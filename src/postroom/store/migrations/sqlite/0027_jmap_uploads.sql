-- Issue 23: blobs uploaded over JMAP (RFC 8620 §6.1), kept for their uploader at least
-- UPLOAD_TTL (24 h) and then swept (store/sql/jmapuploads.py). A row is a reference to
-- its blob: the blob-in-use checks (store/sqliteblobs.py, PostgresStore) count it, so a
-- blob a message shares with an upload outlives either. ON DELETE SET NULL: a deleted
-- account's uploads can no longer be downloaded, yet stay referenced until the sweep
-- releases their blobs (a cascade would leak them).
CREATE TABLE jmap_uploads (
    id INTEGER PRIMARY KEY,
    account_id INTEGER REFERENCES accounts (id) ON DELETE SET NULL,
    blob_id TEXT NOT NULL,
    type TEXT NOT NULL,
    size INTEGER NOT NULL,
    created TEXT NOT NULL
);
CREATE INDEX jmap_uploads_account ON jmap_uploads (account_id, blob_id);
CREATE INDEX jmap_uploads_blob ON jmap_uploads (blob_id);
CREATE INDEX jmap_uploads_created ON jmap_uploads (created);
