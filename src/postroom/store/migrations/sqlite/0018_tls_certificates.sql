-- Issue 20: certificates ordered by postroom itself (SSL_TYPE=acme) and the ACME account
-- key, shared by every node (each writes them into its DATA_DIR/acme/), and the lease that
-- lets one node at a time order from the CA.
CREATE TABLE tls_certificates (
    name TEXT PRIMARY KEY,
    chain_pem TEXT NOT NULL,
    key_pem TEXT NOT NULL,
    updated TEXT NOT NULL
);

CREATE TABLE tls_acme_account (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    key_pem TEXT NOT NULL
);

CREATE TABLE tls_leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires TEXT NOT NULL
);
