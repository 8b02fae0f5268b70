"""The `QuotaStore` role: Per-account quotas (RFC 9208, docker-mailserver `setup quota`, issue 17).

Owns the Protocol the services above `store/` use, and its rows; both backends implement it
once in `store/sql/quota.py`. The store keeps each account's setting and the last warning
level sent; usage is never stored twice: it is the sum of the trigger-kept mailbox counters
(migration 0008), read with the setting in one query. What a setting means (the server's
default, ENABLE_QUOTAS, the POSTFIX_MAILBOX_SIZE_LIMIT cap) is `accounts/quota.py`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class QuotaSetting:
    """One account's quota as set (migration 0013).

    `storage`: bytes, None for the server's default, 0 for no per-account limit.
    `messages`: messages over all the account's mailboxes, None (or 0) for none.
    `warned`: the usage level in percent last announced to the user (0, 80, 95)."""

    storage: int | None = None
    messages: int | None = None
    warned: int = 0


@dataclass(frozen=True, slots=True)
class QuotaUsage:
    """An account's setting and what it holds now (RFC 9208 §5: STORAGE and MESSAGE over
    the quota root, which is the whole account). Read for a mailbox, `mailbox_messages`
    and `mailbox_size` are that mailbox's own; read for an account they are 0."""

    account_id: int
    address: str
    setting: QuotaSetting
    messages: int
    size: int
    mailbox_messages: int = 0
    mailbox_size: int = 0


class QuotaStore(Protocol):
    """Quota settings and usage, each read in one query of the counters."""

    async def quota_usage(self, mailbox_id: int) -> QuotaUsage:
        """The usage of the mailbox's account, its setting and the mailbox's own message
        count: what every check before adding messages needs (NotFound: no mailbox)."""
        ...

    async def account_quota(self, account_id: int) -> QuotaUsage:
        """The account's setting and usage (NotFound: no such account)."""
        ...

    async def list_quotas(self) -> list[QuotaUsage]:
        """Every account's setting and usage, by address."""
        ...

    async def set_quota(self, address: str, storage: int | None,
                        messages: int | None) -> None:  # fmt: skip
        """Set (None: back to the default / none) an account's limits; the warning level
        starts again from 0 (NotFound: no such account)."""
        ...

    async def set_quota_warned(self, account_id: int, level: int, *, was: int) -> bool:
        """Record warning level `level` if the stored one is still `was`: True for the
        one writer that changed it (concurrent deliveries warn once)."""
        ...
