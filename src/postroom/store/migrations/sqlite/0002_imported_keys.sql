-- postroom schema, version 2 (SQLite): what importers (accounts/dms_import.py) have
-- already brought into each mailbox, by the source's own identity for a message (a
-- Maildir base name), recorded in the same transaction as the message, so a re-run
-- imports nothing twice. Kept after the message is expunged (an import does not bring
-- back what the user deleted); forgotten with the mailbox.

CREATE TABLE imported_keys (
    mailbox_id INTEGER NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
    source_key TEXT NOT NULL,
    PRIMARY KEY (mailbox_id, source_key)
);
