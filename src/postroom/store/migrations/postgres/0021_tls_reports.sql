-- Issue 20, TLS-RPT (RFC 8460): the outcomes of our outbound TLS sessions counted per UTC
-- day and aggregation key (outcome_key: a digest of the key's columns), and the policies
-- of the reports other senders send about our domains.
CREATE TABLE tls_outcomes (
    day TEXT NOT NULL,
    outcome_key TEXT NOT NULL,
    policy_domain TEXT NOT NULL,
    policy_type TEXT NOT NULL,
    policy_strings TEXT NOT NULL,
    mx_host TEXT NOT NULL,
    receiving_ip TEXT NOT NULL,
    result TEXT NOT NULL,
    detail TEXT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (day, outcome_key)
);

CREATE TABLE tls_reports_received (
    organization TEXT NOT NULL,
    report_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    contact TEXT NOT NULL,
    begins TIMESTAMPTZ NOT NULL,
    ends TIMESTAMPTZ NOT NULL,
    policy_domain TEXT NOT NULL,
    policy_type TEXT NOT NULL,
    successful BIGINT NOT NULL,
    failed BIGINT NOT NULL,
    failures TEXT NOT NULL,
    received TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (organization, report_id, position)
);

CREATE INDEX tls_reports_received_ends ON tls_reports_received (ends);
