-- Issue 23: JMAP states and /changes (store/sql/jmapstate.py, decision 0057).
-- An expunge record names the blob of the message it removed: JMAP's Email id is the blob
-- id, so Email/changes can tell which Emails lost a copy or are gone. NULL in records
-- written before this version (and in those the PostgreSQL transfer imports): a /changes
-- that needs one of them answers cannotCalculateChanges. Nothing looks records up by
-- blob, so no index: every expunge keeps its cost.
ALTER TABLE expunged ADD COLUMN blob_id TEXT;

-- A JMAP state string is "s" + `id` in base 36: a snapshot of the account's mailbox
-- vector (`vector`, canonical JSON; `digest` its SHA-256). AUTOINCREMENT: an id is never
-- handed out twice, not even after the newest snapshots went with their account. The
-- newest STATES_KEPT snapshots per account are kept.
CREATE TABLE jmap_states (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    digest TEXT NOT NULL,
    vector TEXT NOT NULL,
    created TEXT NOT NULL,
    UNIQUE (account_id, digest)
);
CREATE INDEX jmap_states_account ON jmap_states (account_id, id);
