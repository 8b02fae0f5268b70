"""The `MetadataStore` role: IMAP METADATA (RFC 5464) annotations (issue 17).

Owns the Protocol the services above `store/` use and its row; both backends implement it
once in `store/sql/metadata.py`.

Invariants: an entry belongs to one account and either one of its mailboxes or, with
`mailbox_id` None, the server as that account sees it; entry names are stored lower-cased
(RFC 5464 §3.2: they compare case-insensitively); a mailbox's entries go when it is
deleted and stay with it when it is renamed (RENAME INBOX copies them to the new
mailbox). Limits (value size, entries) are the caller's, checked before the write.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class MetadataEntry:
    name: str  # lower-cased, e.g. "/private/comment"
    value: bytes = field(repr=False)


class MetadataStore(Protocol):
    """What IMAP METADATA asks of the store."""

    async def list_metadata(self, account_id: int, mailbox_id: int | None
                            ) -> list[MetadataEntry]:  # fmt: skip
        """Every entry of the mailbox (None: the server's), in name order."""
        ...

    async def set_metadata(self, account_id: int, mailbox_id: int | None,
                           changes: Sequence[tuple[str, bytes | None]]) -> None:  # fmt: skip
        """Set (bytes) or remove (None) entries, all in one transaction; names lower-cased
        by the caller. NotFound when the mailbox is gone."""
        ...

    async def metadata_bytes(self, account_id: int) -> int:
        """The size of all the account's entry values together."""
        ...
