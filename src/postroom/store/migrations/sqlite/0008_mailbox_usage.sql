-- postroom schema, version 8 (issue 25): each mailbox keeps its message count and the sum
-- of its message sizes, so the limits on messages per mailbox and bytes per account
-- (MAX_MESSAGES_PER_MAILBOX, POSTFIX_MAILBOX_SIZE_LIMIT) cost one row read instead of a
-- scan. Triggers keep them, so no write path (append, COPY, MOVE, expunge, INBOX rename,
-- import, a mailbox or account deleted) can forget to. An account's usage is the sum over
-- its mailbox rows. Rows removed by ON DELETE CASCADE fire the DELETE trigger too; its
-- UPDATE then finds no mailbox row and changes nothing.

ALTER TABLE mailboxes ADD COLUMN message_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE mailboxes ADD COLUMN total_size INTEGER NOT NULL DEFAULT 0;

UPDATE mailboxes SET
    message_count = (SELECT count(*) FROM messages m WHERE m.mailbox_id = mailboxes.id),
    total_size = (SELECT coalesce(sum(size), 0) FROM messages m WHERE m.mailbox_id = mailboxes.id);

CREATE TRIGGER messages_usage_insert AFTER INSERT ON messages
BEGIN
    UPDATE mailboxes SET message_count = message_count + 1, total_size = total_size + NEW.size
    WHERE id = NEW.mailbox_id;
END;

CREATE TRIGGER messages_usage_delete AFTER DELETE ON messages
BEGIN
    UPDATE mailboxes SET message_count = message_count - 1, total_size = total_size - OLD.size
    WHERE id = OLD.mailbox_id;
END;

-- Only renaming INBOX moves rows between mailboxes (RFC 9051 §6.3.9); flag and MODSEQ
-- updates name neither column, so this trigger never runs for them.
CREATE TRIGGER messages_usage_move AFTER UPDATE OF mailbox_id, size ON messages
WHEN OLD.mailbox_id <> NEW.mailbox_id OR OLD.size <> NEW.size
BEGIN
    UPDATE mailboxes SET message_count = message_count - 1, total_size = total_size - OLD.size
    WHERE id = OLD.mailbox_id;
    UPDATE mailboxes SET message_count = message_count + 1, total_size = total_size + NEW.size
    WHERE id = NEW.mailbox_id;
END;
