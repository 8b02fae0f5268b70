"""Data in and out of other mail servers, for the `import` and `export` CLI verbs.

A floor of its own beside the CLI: it may use the services and everything below them
(store, mail, mailauth keys, accounts' mailbox limits), and nothing but the CLI (cli/) imports
it; the running server (runtime, sessions, the queue) never does.

Modules: dms_import.py (a docker-mailserver installation: accounts, aliases, DKIM keys,
mail), maildir.py (the Maildir++/Dovecot folder and file formats, both ways),
maildir_export.py (a store's mail written back out as Maildir).
"""
