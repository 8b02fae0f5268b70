-- postroom schema, version 5 (PostgreSQL), issue 10; the same change as
-- migrations/sqlite/0005_leases_auth_failures.sql:
-- 1. Queue leases: a claimed row's `next_attempt` is the end of its lease; `leased_until`
--    marks it claimed, so `queue flush` never makes a row another node is delivering
--    claimable again (which would send it twice).
-- 2. Failed logins per client address key, shared by every node on this database, so an
--    attacker spreading guesses over the nodes gets no more than on one.

ALTER TABLE queue ADD COLUMN leased_until TIMESTAMPTZ;

CREATE TABLE auth_failures (
    address TEXT NOT NULL,
    at TIMESTAMPTZ NOT NULL
);
CREATE INDEX auth_failures_address ON auth_failures (address, at);
CREATE INDEX auth_failures_at ON auth_failures (at);
