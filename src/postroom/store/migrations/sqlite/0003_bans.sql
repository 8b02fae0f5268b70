-- postroom schema, version 3 (SQLite): client addresses banned after failed logins
-- (issue 7, security/bans.py). `address` is a key from security/peer.py — an IPv4
-- address or an IPv6 /64 — so one row covers every spelling of one client. Times are
-- UTC text in the store's fixed-width format, so they compare as text.

CREATE TABLE bans (
    address TEXT PRIMARY KEY,
    created TEXT NOT NULL,
    expires TEXT NOT NULL,
    failures INTEGER NOT NULL,
    reason TEXT NOT NULL DEFAULT ''
);
CREATE INDEX bans_expires ON bans (expires);
