"""POP3 server: sans-IO wire (wire.py), command semantics (commands.py), asyncio driver
(session.py). See each module's docstring for its invariants."""
