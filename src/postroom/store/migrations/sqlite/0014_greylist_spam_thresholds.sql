-- postroom schema, version 14 (SQLite): the embedded spam filter's shared state (issue 18).
-- `greylist`: one row per triplet (postgrey semantics, checks/greylist.py): `client` is
-- the client's network (IPv4 /24, IPv6 /64), `sender` normalised, `recipient` the RCPT
-- address; `first_seen` starts the delay, `last_seen` the expiry (POSTGREY_MAX_AGE).
-- `greylist_clients`: clients' successful retries, for the auto-whitelist
-- (POSTGREY_AUTO_WHITELIST_CLIENTS). `spam_thresholds`: an account's own SA_TAG /
-- SA_TAG2 / SA_KILL (NULL: the global value), dropped with the account.
-- Times are UTC text in the store's fixed-width format, so they compare as text.

CREATE TABLE greylist (
    client TEXT NOT NULL,
    sender TEXT NOT NULL,
    recipient TEXT NOT NULL,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    passes INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (client, sender, recipient)
);
CREATE INDEX greylist_last_seen ON greylist (last_seen);

CREATE TABLE greylist_clients (
    client TEXT PRIMARY KEY,
    passes INTEGER NOT NULL,
    last_seen TEXT NOT NULL
);
CREATE INDEX greylist_clients_last_seen ON greylist_clients (last_seen);

CREATE TABLE spam_thresholds (
    account_id INTEGER PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    tag REAL,
    tag2 REAL,
    kill REAL
);
