-- Issue 22: the full-text index SEARCH TEXT/BODY consult (decision 0051). One FTS5 row
-- per indexed message, rowid = mailbox_id << 32 | uid, holding the case-folded texts
-- SEARCH matches (mail/searchtext.py). The trigram tokenizer (no case folding of its
-- own) finds the rows holding every trigram of the string; instr() on the stored text
-- then confirms the substring exactly. detail = 'none' keeps no positions: the index
-- is less than half the size of a positional one, and the confirmation needs none.
CREATE VIRTUAL TABLE fulltext USING fts5 (
    header, body, tokenize = 'trigram case_sensitive 1', detail = 'none'
);

-- Per mailbox: every UID up to indexed_uid is in `fulltext` or in `fulltext_skipped`
-- (or expunged). Messages above it are searched the old way until the indexer gets there.
CREATE TABLE fulltext_progress (
    mailbox_id INTEGER PRIMARY KEY REFERENCES mailboxes (id) ON DELETE CASCADE,
    indexed_uid INTEGER NOT NULL
);

-- Messages the index does not hold (too much text, text SQLite cannot store): searched
-- the old way.
CREATE TABLE fulltext_skipped (
    mailbox_id INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    PRIMARY KEY (mailbox_id, uid),
    FOREIGN KEY (mailbox_id, uid) REFERENCES messages (mailbox_id, uid)
        ON DELETE CASCADE ON UPDATE CASCADE
);

-- Expunge (and a mailbox's deletion, by cascade) drops the index row in its own
-- transaction; a message moved to another mailbox id (renaming INBOX) loses its row and
-- is indexed again there.
CREATE TRIGGER fulltext_expunge AFTER DELETE ON messages BEGIN
    DELETE FROM fulltext WHERE rowid = (old.mailbox_id << 32) | old.uid;
END;
CREATE TRIGGER fulltext_move AFTER UPDATE OF mailbox_id, uid ON messages BEGIN
    DELETE FROM fulltext WHERE rowid = (old.mailbox_id << 32) | old.uid;
END;
