-- Issue 20: recipient domains' MTA-STS policies (RFC 8461 §5.1), cached durably with the
-- id of the TXT record they were fetched for and their expiry, so a policy in force keeps
-- protecting delivery while its policy server is down or the TXT record disappears.
CREATE TABLE mta_sts_policies (
    domain TEXT PRIMARY KEY,
    policy_id TEXT NOT NULL,
    policy_text TEXT NOT NULL,
    fetched TEXT NOT NULL,
    expires TEXT NOT NULL
);
