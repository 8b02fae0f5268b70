-- postroom schema, version 6 (PostgreSQL): SQLite's version 6 moves small bodies into the
-- database. Here every body is a row of `blobs` already (store/pgblobs.py), so this
-- version changes nothing; it exists because version numbers are shared across backends.

SELECT 1;
