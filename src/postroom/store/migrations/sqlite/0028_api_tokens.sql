-- Issue 23: API tokens (accounts/apitokens.py): bearer credentials for JMAP, made on the
-- self-service page. 256 random bits each, so only their SHA-256 is kept (no slow hash:
-- there is nothing to guess from a dictionary); a login looks the hash up (unique).
CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL,
    last_used TEXT,
    UNIQUE (account_id, name)
);
