-- Issue 19: Sieve scripts per account (ManageSieve, RFC 5804: at most one active), the
-- global scripts (docker-mailserver's before/after, and :global includes), and what the
-- vacation (RFC 5230 §4.2) and duplicate (RFC 7352) extensions must remember between
-- deliveries, shared by every node.
CREATE TABLE sieve_scripts (
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    content TEXT NOT NULL,
    is_active INTEGER NOT NULL DEFAULT 0,
    updated TEXT NOT NULL,
    PRIMARY KEY (account_id, name)
);
CREATE UNIQUE INDEX sieve_scripts_one_active ON sieve_scripts (account_id) WHERE is_active = 1;

CREATE TABLE sieve_global_scripts (
    name TEXT PRIMARY KEY,
    content TEXT NOT NULL,
    updated TEXT NOT NULL
);

CREATE TABLE sieve_vacation_replies (
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    handle TEXT NOT NULL,
    sender TEXT NOT NULL,
    expires TEXT NOT NULL,
    PRIMARY KEY (account_id, handle, sender)
);
CREATE INDEX sieve_vacation_expires ON sieve_vacation_replies (expires);

CREATE TABLE sieve_duplicates (
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    handle TEXT NOT NULL,
    value TEXT NOT NULL,
    expires TEXT NOT NULL,
    PRIMARY KEY (account_id, handle, value)
);
CREATE INDEX sieve_duplicates_expires ON sieve_duplicates (expires);
