"""Storage errors every Store backend raises, in the shared error vocabulary.

Both are `Refused` (ARCHITECTURE.md rule 4), so a protocol driver maps them without
knowing about the store; `code` is the IMAP response code (RFC 5530) that fits best.
"""

from __future__ import annotations

from postroom.errors import Refused


class AlreadyExists(Refused):
    """The account, alias or mailbox being created is already there."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="ALREADYEXISTS")


class NotFound(Refused):
    """The account, mailbox or queue entry named does not exist."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="NONEXISTENT")
