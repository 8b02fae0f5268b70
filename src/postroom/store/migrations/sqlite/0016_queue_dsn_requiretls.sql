-- postroom schema, version 16 (sqlite), issue 17 (SMTP corners); the same change as
-- migrations/postgres/0016_queue_dsn_requiretls.sql. Independent of 0010-0015.
-- What a queued recipient carries from the transaction that submitted it:
-- orcpt: RFC 3461 ORCPT ("addr-type;xtext" as sent), passed on and echoed in DSNs;
-- ret: RFC 3461 RET ("FULL", "HDRS" or "");
-- body: RFC 6152 / RFC 3030 BODY ("8BITMIME", "BINARYMIME" or ""): BINARYMIME needs a
--   next hop with CHUNKING and BINARYMIME;
-- requiretls: RFC 8689 REQUIRETLS (1 = every hop verified TLS, else bounce 5.7.10);
-- delay_notified: 1 once the sender got its delay DSN (DELAY_WARNING_TIME), sent once.

ALTER TABLE queue ADD COLUMN orcpt TEXT NOT NULL DEFAULT '';
ALTER TABLE queue ADD COLUMN ret TEXT NOT NULL DEFAULT '';
ALTER TABLE queue ADD COLUMN body TEXT NOT NULL DEFAULT '';
ALTER TABLE queue ADD COLUMN requiretls INTEGER NOT NULL DEFAULT 0;
ALTER TABLE queue ADD COLUMN delay_notified INTEGER NOT NULL DEFAULT 0;
