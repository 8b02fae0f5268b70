-- postroom schema, version 2 (PostgreSQL): what importers (accounts/dms_import.py) have
-- already brought into each mailbox, so a re-run imports nothing twice. Kept after the
-- message is expunged; forgotten with the mailbox.

CREATE TABLE imported_keys (
    mailbox_id BIGINT NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
    source_key TEXT NOT NULL,
    PRIMARY KEY (mailbox_id, source_key)
);
