-- Issue 23: JMAP thread ids (RFC 8621 §3; store/sql/jmapthreads.py, jmap/threads.py).
-- An Email (a message blob of the account) gets its thread id once, by the first JMAP
-- request after it arrived; the row stays after the Email is gone, so that
-- Thread/changes can still name the thread a destroyed Email was in. `received` is the
-- Email's internal date as fixed-width UTC text (text order is time order): Thread/get
-- lists a thread's Emails by it.
CREATE TABLE email_threads (
    account_id BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    blob_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    received TEXT NOT NULL,
    PRIMARY KEY (account_id, blob_id)
);
CREATE INDEX email_threads_thread ON email_threads (account_id, thread_id, received);

-- The Message-IDs (own, In-Reply-To, References: at most MAX_REFERENCES per Email) of
-- threaded Emails, each under the first thread that named it: a later Email naming one
-- of them joins that thread.
CREATE TABLE thread_message_ids (
    account_id BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    message_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    PRIMARY KEY (account_id, message_id)
);

-- Per mailbox, the UID up to which every message's Email has a thread, in the UID space
-- `uidvalidity` names (an import may give an emptied mailbox another): the search for
-- unthreaded Emails reads only the rows above it.
CREATE TABLE email_thread_marks (
    mailbox_id BIGINT PRIMARY KEY REFERENCES mailboxes (id) ON DELETE CASCADE,
    uidvalidity BIGINT NOT NULL,
    uid BIGINT NOT NULL
);
