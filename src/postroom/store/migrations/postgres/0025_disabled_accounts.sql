-- Issue 21: accounts an administrator disabled (store/accountstate_api.py): their logins
-- are refused, their mail is kept and still delivered.
CREATE TABLE disabled_accounts (
    account_id BIGINT PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE
);
