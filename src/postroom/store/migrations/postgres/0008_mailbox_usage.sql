-- postroom schema, version 8 (issue 25): each mailbox keeps its message count and the sum
-- of its message sizes, so the limits on messages per mailbox and bytes per account
-- (MAX_MESSAGES_PER_MAILBOX, POSTFIX_MAILBOX_SIZE_LIMIT) cost one row read instead of a
-- scan. Triggers keep them, so no write path (append, COPY, MOVE, expunge, INBOX rename,
-- import, a mailbox or account deleted) can forget to. An account's usage is the sum over
-- its mailbox rows.
-- INSERT and DELETE triggers run once per statement over its transition table: a COPY of
-- 10,000 messages updates the target's row once, not 10,000 times (each of which would
-- leave a dead row version). Every writer already holds the mailbox row's lock when it
-- inserts or deletes (store/postgres.py), so the trigger's UPDATE waits on no one new.
-- Rows removed by ON DELETE CASCADE fire the DELETE trigger too; its UPDATE then finds
-- no mailbox row and changes nothing.

ALTER TABLE mailboxes ADD COLUMN message_count BIGINT NOT NULL DEFAULT 0;
ALTER TABLE mailboxes ADD COLUMN total_size BIGINT NOT NULL DEFAULT 0;

UPDATE mailboxes b SET message_count = u.n, total_size = u.bytes
FROM (SELECT mailbox_id, count(*) AS n, sum(size) AS bytes FROM messages GROUP BY mailbox_id) u
WHERE b.id = u.mailbox_id;

CREATE FUNCTION messages_usage_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE mailboxes b SET message_count = b.message_count + u.n,
                           total_size = b.total_size + u.bytes
    FROM (SELECT mailbox_id, count(*) AS n, sum(size) AS bytes FROM added_rows
          GROUP BY mailbox_id) u
    WHERE b.id = u.mailbox_id;
    RETURN NULL;
END $$;

CREATE FUNCTION messages_usage_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE mailboxes b SET message_count = b.message_count - u.n,
                           total_size = b.total_size - u.bytes
    FROM (SELECT mailbox_id, count(*) AS n, sum(size) AS bytes FROM removed_rows
          GROUP BY mailbox_id) u
    WHERE b.id = u.mailbox_id;
    RETURN NULL;
END $$;

CREATE TRIGGER messages_usage_insert AFTER INSERT ON messages
    REFERENCING NEW TABLE AS added_rows
    FOR EACH STATEMENT EXECUTE FUNCTION messages_usage_added();

CREATE TRIGGER messages_usage_delete AFTER DELETE ON messages
    REFERENCING OLD TABLE AS removed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION messages_usage_removed();

-- Only renaming INBOX moves rows between mailboxes (RFC 9051 §6.3.9). A per-row trigger
-- with a column list: flag and MODSEQ updates name neither column, so it never runs for
-- them (PostgreSQL allows no transition tables on a trigger with a column list).
CREATE FUNCTION messages_usage_moved() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE mailboxes SET message_count = message_count - 1, total_size = total_size - OLD.size
    WHERE id = OLD.mailbox_id;
    UPDATE mailboxes SET message_count = message_count + 1, total_size = total_size + NEW.size
    WHERE id = NEW.mailbox_id;
    RETURN NULL;
END $$;

CREATE TRIGGER messages_usage_move AFTER UPDATE OF mailbox_id, size ON messages
    FOR EACH ROW WHEN (OLD.mailbox_id <> NEW.mailbox_id OR OLD.size <> NEW.size)
    EXECUTE FUNCTION messages_usage_moved();
