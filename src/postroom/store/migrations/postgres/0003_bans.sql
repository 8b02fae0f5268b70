-- postroom schema, version 3 (PostgreSQL): client addresses banned after failed logins
-- (issue 7, security/bans.py), the same table as migrations/sqlite/0003_bans.sql. In one
-- database the bans are shared: a client banned by one node is refused by every node.

CREATE TABLE bans (
    address TEXT PRIMARY KEY,
    created TIMESTAMPTZ NOT NULL,
    expires TIMESTAMPTZ NOT NULL,
    failures INTEGER NOT NULL,
    reason TEXT NOT NULL DEFAULT ''
);
CREATE INDEX bans_expires ON bans (expires);
