-- Issue 20: DMARC aggregate reports (RFC 7489 §7.2). What we count of inbound DMARC
-- evaluations for the reports we send, the reports others send us about our domains, and
-- the log of report days already sent by each daily job (DMARC, TLS-RPT).
CREATE TABLE dmarc_evaluations (
    day TEXT NOT NULL,
    policy_domain TEXT NOT NULL,
    row_key TEXT NOT NULL,
    record TEXT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (day, policy_domain, row_key)
);

CREATE TABLE dmarc_policies (
    day TEXT NOT NULL,
    domain TEXT NOT NULL,
    policy TEXT NOT NULL,
    PRIMARY KEY (day, domain)
);

CREATE TABLE dmarc_received_reports (
    id INTEGER PRIMARY KEY,
    org_name TEXT NOT NULL,
    email TEXT NOT NULL,
    report_id TEXT NOT NULL,
    policy_domain TEXT NOT NULL,
    begin_time TEXT NOT NULL,
    end_time TEXT NOT NULL,
    received TEXT NOT NULL,
    UNIQUE (org_name, report_id)
);

CREATE INDEX dmarc_received_reports_end ON dmarc_received_reports (end_time);

CREATE TABLE dmarc_received_rows (
    report INTEGER NOT NULL REFERENCES dmarc_received_reports (id) ON DELETE CASCADE,
    source_ip TEXT NOT NULL,
    count BIGINT NOT NULL,
    disposition TEXT NOT NULL,
    dkim TEXT NOT NULL,
    spf TEXT NOT NULL,
    header_from TEXT NOT NULL,
    dkim_domains TEXT NOT NULL,
    spf_domain TEXT NOT NULL,
    spf_result TEXT NOT NULL
);

CREATE INDEX dmarc_received_rows_report ON dmarc_received_rows (report);

CREATE TABLE report_days (
    job TEXT NOT NULL,
    day TEXT NOT NULL,
    holder TEXT NOT NULL,
    expires TEXT NOT NULL,
    finished TEXT,
    PRIMARY KEY (job, day)
);
