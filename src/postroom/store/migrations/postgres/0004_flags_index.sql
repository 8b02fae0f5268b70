-- postroom schema, version 4 (PostgreSQL): a covering index for SELECT on large
-- mailboxes (issue 8), so `list_flag_columns` is an index-only scan that never reads
-- the rows carrying each message's meta.
CREATE INDEX messages_flags ON messages (mailbox_id, uid) INCLUDE (modseq, flags);
