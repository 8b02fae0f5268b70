-- postroom schema, version 14 (PostgreSQL): the embedded spam filter's shared state
-- (issue 18), the same tables as migrations/sqlite/0014_greylist_spam_thresholds.sql. In
-- one database greylisting is shared: a client delayed by one node passes on any node once
-- the delay is over.

CREATE TABLE greylist (
    client TEXT NOT NULL,
    sender TEXT NOT NULL,
    recipient TEXT NOT NULL,
    first_seen TIMESTAMPTZ NOT NULL,
    last_seen TIMESTAMPTZ NOT NULL,
    passes INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (client, sender, recipient)
);
CREATE INDEX greylist_last_seen ON greylist (last_seen);

CREATE TABLE greylist_clients (
    client TEXT PRIMARY KEY,
    passes INTEGER NOT NULL,
    last_seen TIMESTAMPTZ NOT NULL
);
CREATE INDEX greylist_clients_last_seen ON greylist_clients (last_seen);

CREATE TABLE spam_thresholds (
    account_id BIGINT PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    tag DOUBLE PRECISION,
    tag2 DOUBLE PRECISION,
    kill DOUBLE PRECISION
);
