-- Issue 21 (self-service): app passwords (per device, hashed as passwords are; `tag` is
-- their first characters in clear, so a login hashes only the one candidate it names),
-- the TOTP second factor of the web login (RFC 6238; `last_step` refuses a replayed code
-- on every node), one-time recovery codes (SHA-256 of high-entropy codes) and the capped
-- history of successful logins. Everything goes with the account (ON DELETE CASCADE).
CREATE TABLE app_passwords (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    tag TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created TEXT NOT NULL,
    last_used TEXT,
    UNIQUE (account_id, name)
);
CREATE INDEX app_passwords_tag ON app_passwords (account_id, tag);

CREATE TABLE account_totp (
    account_id INTEGER PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    secret TEXT NOT NULL,
    is_confirmed INTEGER NOT NULL DEFAULT 0,
    last_step INTEGER NOT NULL DEFAULT 0,
    created TEXT NOT NULL
);

CREATE TABLE recovery_codes (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    code_hash TEXT NOT NULL,
    used TEXT
);
CREATE INDEX recovery_codes_account ON recovery_codes (account_id);

CREATE TABLE login_history (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    at TEXT NOT NULL,
    protocol TEXT NOT NULL,
    client TEXT NOT NULL,
    credential TEXT NOT NULL
);
CREATE INDEX login_history_account ON login_history (account_id, at);
