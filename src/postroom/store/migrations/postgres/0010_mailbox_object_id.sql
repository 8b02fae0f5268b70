-- Issue 17: every mailbox gets an identity that is never handed to another mailbox, not
-- even to one created later under the same name (the SQLite twin explains why `id` is not
-- it there; here identities are not reused, but both backends keep the same schema).
-- `object_id` is a random token ('M' and at least 22 characters of A-Z a-z 0-9 _ -),
-- which RFC 8474 OBJECTID also serves as MAILBOXID. New rows get theirs from
-- store/sql/mailboxes.py; the default fills any row inserted without one.
-- Independent of migrations 0008 and 0009.

ALTER TABLE mailboxes ADD COLUMN object_id TEXT;

UPDATE mailboxes
SET object_id = 'M' || substr(md5(random()::text || clock_timestamp()::text || id::text), 1, 22);

ALTER TABLE mailboxes ALTER COLUMN object_id SET NOT NULL;
ALTER TABLE mailboxes ALTER COLUMN object_id
    SET DEFAULT ('M' || substr(md5(random()::text || clock_timestamp()::text), 1, 22));
ALTER TABLE mailboxes ADD CONSTRAINT mailboxes_object_id UNIQUE (object_id);
