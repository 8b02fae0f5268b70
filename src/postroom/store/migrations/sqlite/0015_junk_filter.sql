-- postroom schema, version 15 (sqlite): the per-account learning junk filter (issue 18,
-- junk/, store/sql/junk.py). Per account: how many messages were trained as spam and as
-- ham, per token in how many of each it appeared, which messages (by blob id, i.e. by
-- content) were trained as what, and the addresses its user wrote to (known-good
-- senders). Everything goes with the account (ON DELETE CASCADE).

CREATE TABLE junk_totals (
    account_id INTEGER PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    spam INTEGER NOT NULL DEFAULT 0,
    ham INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE junk_tokens (
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    token TEXT NOT NULL,
    spam INTEGER NOT NULL DEFAULT 0,
    ham INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, token)
) WITHOUT ROWID;

CREATE TABLE junk_trained (
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    message_key TEXT NOT NULL,
    is_spam INTEGER NOT NULL,
    PRIMARY KEY (account_id, message_key)
) WITHOUT ROWID;

CREATE TABLE junk_senders (
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    address TEXT NOT NULL,
    PRIMARY KEY (account_id, address)
) WITHOUT ROWID;
