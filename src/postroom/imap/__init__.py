"""The IMAP server: `wire/` is the sans-IO protocol core; the asyncio session and the
command handlers sit on top of it (ARCHITECTURE.md, imap/)."""
