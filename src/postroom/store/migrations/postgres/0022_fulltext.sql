-- Issue 22: the full-text index SEARCH TEXT/BODY consult (decision 0051). The case-folded
-- texts SEARCH matches (mail/searchtext.py), with pg_trgm GIN indexes: `LIKE '%x%'` is
-- an exact substring test that the trigram index answers (pg_trgm is a trusted
-- extension: the database owner may create it).
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE fulltext (
    mailbox_id BIGINT NOT NULL,
    uid BIGINT NOT NULL,
    header TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (mailbox_id, uid),
    FOREIGN KEY (mailbox_id, uid) REFERENCES messages (mailbox_id, uid)
        ON DELETE CASCADE ON UPDATE CASCADE
);
CREATE INDEX fulltext_header ON fulltext USING gin (header gin_trgm_ops);
CREATE INDEX fulltext_body ON fulltext USING gin (body gin_trgm_ops);

-- Per mailbox: every UID up to indexed_uid is in `fulltext` or in `fulltext_skipped`
-- (or expunged). Messages above it are searched the old way until the indexer gets there.
CREATE TABLE fulltext_progress (
    mailbox_id BIGINT PRIMARY KEY REFERENCES mailboxes (id) ON DELETE CASCADE,
    indexed_uid BIGINT NOT NULL
);

-- Messages the index does not hold (too much text, text PostgreSQL cannot store).
CREATE TABLE fulltext_skipped (
    mailbox_id BIGINT NOT NULL,
    uid BIGINT NOT NULL,
    PRIMARY KEY (mailbox_id, uid),
    FOREIGN KEY (mailbox_id, uid) REFERENCES messages (mailbox_id, uid)
        ON DELETE CASCADE ON UPDATE CASCADE
);
