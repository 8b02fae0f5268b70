-- Issue 17: every mailbox gets an identity that is never handed to another mailbox, not
-- even to one created later under the same name. `id` cannot be it: SQLite gives a new row
-- the highest rowid + 1, so deleting the newest mailbox and creating another reuses its
-- id, and whatever a process kept per mailbox id (the \Recent claims of imap/selected.py)
-- would carry over. `object_id` is a random token ('M' and at least 22 characters of
-- A-Z a-z 0-9 _ -), which RFC 8474 OBJECTID also serves as MAILBOXID.
-- New rows get theirs from store/sql/mailboxes.py; the trigger fills any row inserted
-- without one (older code, hand-made rows). SQLite cannot add a NOT NULL column without a
-- constant default, so the trigger and the unique index stand in for the constraint.
-- Independent of migrations 0008 and 0009.

ALTER TABLE mailboxes ADD COLUMN object_id TEXT;

UPDATE mailboxes SET object_id = 'M' || lower(hex(randomblob(11))) WHERE object_id IS NULL;

CREATE UNIQUE INDEX mailboxes_object_id ON mailboxes (object_id);

CREATE TRIGGER mailboxes_object_id_fill AFTER INSERT ON mailboxes
WHEN NEW.object_id IS NULL
BEGIN
    UPDATE mailboxes SET object_id = 'M' || lower(hex(randomblob(11))) WHERE id = NEW.id;
END;
