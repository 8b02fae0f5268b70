-- Issue 23: JMAP Identities (RFC 8621 §6) and EmailSubmission records (§7), written by
-- store/sql/jmapidentities.py. Each change of an account's identities (or submissions)
-- takes the next `modseq` of that account's counter for the kind; a row keeps the value
-- of its creation and of its last change, and a destroyed row stays as a tombstone, so
-- Identity/changes and EmailSubmission/changes are read from the rows alone. Tombstones
-- past a bound are deleted and `pruned` raised: /changes from a state below it cannot be
-- told. `is_default`: one of the addresses the account may send as (SPOOF_PROTECTION's
-- rule), kept in step by the JMAP layer; it cannot be destroyed (mayDelete false).
CREATE TABLE jmap_object_counters (
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    modseq INTEGER NOT NULL,
    pruned INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, kind)
);

CREATE TABLE jmap_identities (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    is_default INTEGER NOT NULL,
    name TEXT NOT NULL,
    reply_to TEXT,
    bcc TEXT,
    text_signature TEXT NOT NULL,
    html_signature TEXT NOT NULL,
    created_modseq INTEGER NOT NULL,
    modseq INTEGER NOT NULL,
    is_destroyed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX jmap_identities_account ON jmap_identities (account_id, modseq);

-- `envelope` is the JMAP Envelope as JSON; `email_id` the Email's (message blob's) id.
CREATE TABLE jmap_submissions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    identity_id TEXT NOT NULL,
    email_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    envelope TEXT NOT NULL,
    send_at TEXT NOT NULL,
    undo_status TEXT NOT NULL,
    created_modseq INTEGER NOT NULL,
    modseq INTEGER NOT NULL,
    is_destroyed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX jmap_submissions_account ON jmap_submissions (account_id, modseq);
