-- Issue 17: IMAP METADATA (RFC 5464). One row per entry: a mailbox's (`mailbox_id` set)
-- or the server's as this account sees it (`mailbox_id` NULL: server entries are kept per
-- account, as Dovecot keeps them with the user's INBOX, since postroom has no
-- administrator over IMAP). `name` is the entry name lower-cased ("/private/comment"):
-- entry names compare case-insensitively. A mailbox's entries go with it when it is
-- deleted, an account's with the account; RENAME keeps the mailbox id, so its entries
-- stay with it. Independent of the other issue-17 migrations.

CREATE TABLE metadata (
    account_id BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    mailbox_id BIGINT REFERENCES mailboxes (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    value BYTEA NOT NULL
);

CREATE UNIQUE INDEX metadata_entry ON metadata (account_id, coalesce(mailbox_id, 0), name);
CREATE INDEX metadata_mailbox ON metadata (mailbox_id) WHERE mailbox_id IS NOT NULL;
