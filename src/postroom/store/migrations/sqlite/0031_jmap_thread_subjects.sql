-- Issue 23: JMAP threads gather roots by base subject (RFC 5256 §3 REFERENCES step 5;
-- jmap/threads.py, store/sql/jmapthreads.py). An Email that no Message-ID links to an
-- earlier one starts a thread, and its base subject (RFC 5256 §2.1, i;ascii-casemap) is
-- kept here as a SHA-256 digest (fixed-width key, no subject text stored): a later such
-- Email with the same non-empty base subject joins that thread. First thread wins.
CREATE TABLE thread_subjects (
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    subject_digest TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    PRIMARY KEY (account_id, subject_digest)
);
