-- postroom schema, version 13 (issue 17): per-account quotas, docker-mailserver's
-- `setup quota set user@domain 2G` and RFC 9208's STORAGE and MESSAGE resources.
-- quota_storage: bytes, NULL = the server's default (DEFAULT_QUOTA, else
-- POSTFIX_MAILBOX_SIZE_LIMIT), 0 = no per-account limit. quota_messages: messages over
-- all the account's mailboxes, NULL or 0 = none. quota_warned: the last warning level sent
-- (0, 80 or 95 percent), so each crossing is announced once (accounts/quota.py).
-- Usage is not stored here: it is the sum of the mailbox counters of migration 0008.

ALTER TABLE accounts ADD COLUMN quota_storage INTEGER;
ALTER TABLE accounts ADD COLUMN quota_messages INTEGER;
ALTER TABLE accounts ADD COLUMN quota_warned INTEGER NOT NULL DEFAULT 0;
