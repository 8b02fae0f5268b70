-- postroom schema, version 5 (SQLite), issue 10:
-- 1. Queue leases. A claimed row's `next_attempt` is the end of its lease (so the claim
--    query and the worker's wake-up stay index lookups); `leased_until` says the row is
--    claimed, so `queue flush` makes deferred rows due now without taking a row away from
--    the worker that is delivering it. NULL: not claimed (or settled since).
-- 2. Failed logins per client address key (security/bans.py), kept in the store so every
--    node sharing it counts the same failures. Rows older than AUTH_BAN_FIND_TIME are
--    pruned as new ones arrive; a ban clears its address's rows.

ALTER TABLE queue ADD COLUMN leased_until TEXT;

CREATE TABLE auth_failures (
    address TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX auth_failures_address ON auth_failures (address, at);
CREATE INDEX auth_failures_at ON auth_failures (at);
