-- postroom schema, version 4 (SQLite): a covering index for SELECT on large mailboxes
-- (issue 8). `list_flag_columns` reads uid, modseq and flags of every message in a
-- mailbox; from this index SQLite never touches the table rows, which carry each
-- message's meta (a 100,000-message SELECT went from a full table scan to ~100k index
-- entries).
CREATE INDEX messages_flags ON messages (mailbox_id, uid, modseq, flags);
