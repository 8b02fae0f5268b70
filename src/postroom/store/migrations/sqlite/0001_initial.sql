-- postroom schema, version 1 (SQLite).
-- Version numbers are shared with migrations/postgres/: version N means the same logical
-- schema on every backend. Times the store compares (queue, saved dates) are UTC text in
-- one fixed-width format so they sort as text; internal dates keep their own UTC offset.

CREATE TABLE domains (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);

CREATE TABLE accounts (
    id INTEGER PRIMARY KEY,
    address TEXT NOT NULL UNIQUE,
    domain_id INTEGER NOT NULL REFERENCES domains (id),
    password_hash TEXT NOT NULL
);

CREATE TABLE aliases (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    source_domain TEXT NOT NULL,
    target TEXT NOT NULL,
    UNIQUE (source, target)
);
CREATE INDEX aliases_source_domain ON aliases (source_domain);

-- One global counter so a UIDVALIDITY is never handed out twice (RFC 9051 §2.3.1.1).
CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);

CREATE TABLE mailboxes (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    uidvalidity INTEGER NOT NULL,
    uidnext INTEGER NOT NULL DEFAULT 1,
    highest_modseq INTEGER NOT NULL DEFAULT 1,
    special_use TEXT,
    UNIQUE (account_id, name)
);

-- Kept by name: a subscription may outlive its mailbox (RFC 9051 §6.3.7).
CREATE TABLE subscriptions (
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    PRIMARY KEY (account_id, name)
);

CREATE TABLE messages (
    mailbox_id INTEGER NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
    uid INTEGER NOT NULL,
    modseq INTEGER NOT NULL,
    blob_id TEXT NOT NULL,
    size INTEGER NOT NULL,
    internal_date TEXT NOT NULL,
    saved_date TEXT NOT NULL,
    flags TEXT NOT NULL DEFAULT '',
    meta TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (mailbox_id, uid)
);
CREATE INDEX messages_modseq ON messages (mailbox_id, modseq);
CREATE INDEX messages_blob ON messages (blob_id);

-- Expunged UIDs with the MODSEQ of their expunge (RFC 7162 §3.2.5.2 VANISHED).
CREATE TABLE expunged (
    mailbox_id INTEGER NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
    uid INTEGER NOT NULL,
    modseq INTEGER NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
);
CREATE INDEX expunged_modseq ON expunged (mailbox_id, modseq);

CREATE TABLE queue (
    id INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    recipient TEXT NOT NULL,
    domain TEXT NOT NULL,
    blob_id TEXT NOT NULL,
    size INTEGER NOT NULL,
    created TEXT NOT NULL,
    next_attempt TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    envid TEXT NOT NULL DEFAULT '',
    notify TEXT NOT NULL DEFAULT ''
);
CREATE INDEX queue_next_attempt ON queue (next_attempt);
CREATE INDEX queue_message_id ON queue (message_id);
CREATE INDEX queue_blob ON queue (blob_id);
