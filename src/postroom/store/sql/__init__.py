"""The SQL both backends share, written once (issue 16).

Each module owns one concern's statements and methods — `directory.py` (domains,
accounts, aliases), `mailboxes.py` (mailboxes, subscriptions, the importers' UID spaces),
`messages.py` (reads, COPY/MOVE, expunge), `queue.py`, `guard.py` (bans, failed logins)
— against a transaction (`base.Tx`) and a dialect (`dialect.Dialect`: placeholders, time
values, UID lists, collation). `rows.py` holds the row mappers and shared statements.
`store/sqlite.py` and `store/postgres.py` keep only what truly differs.
"""
