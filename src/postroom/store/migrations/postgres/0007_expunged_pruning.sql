-- postroom schema, version 7: expunge records are pruned instead of kept forever. Each
-- mailbox keeps about its newest EXPUNGES_KEPT records (store/api.py): an expunge adds its
-- count to `expunges_since_prune`, and once that reaches EXPUNGES_KEPT the older records
-- go. `pruned_modseq` is the highest MODSEQ of a record that went and `pruned_uid` the
-- highest UID: asked for expunges since an older MODSEQ, the store answers with every UID
-- up to `pruned_uid` that is not in the mailbox (RFC 7162's VANISHED (EARLIER) may name
-- more than were expunged since; clients ignore UIDs they do not know).

ALTER TABLE mailboxes ADD COLUMN expunges_since_prune BIGINT NOT NULL DEFAULT 0;
ALTER TABLE mailboxes ADD COLUMN pruned_modseq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE mailboxes ADD COLUMN pruned_uid BIGINT NOT NULL DEFAULT 0;
