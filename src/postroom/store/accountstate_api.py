"""The `AccountStateStore` role: accounts an administrator has disabled (issue 21).

Owns the Protocol; both backends implement it once in `store/sql/accountstate.py`.

A disabled account keeps its mail and still receives (delivery does not look at the
flag: mail to a suspended employee is kept, not bounced), but every login through
`AccountService.authenticate` — IMAP, POP3, SMTP AUTH, ManageSieve and the web — is
refused as if the password were wrong. The flag is its own table rather than a column of
`accounts` so no row of the Directory role changes shape; it goes with the account
(ON DELETE CASCADE).
"""

from __future__ import annotations

from typing import Protocol


class AccountStateStore(Protocol):
    async def set_account_disabled(self, account_id: int, is_disabled: bool) -> bool:
        """Disable or enable; True when that changed something."""

    async def is_account_disabled(self, account_id: int) -> bool: ...

    async def list_disabled_accounts(self) -> list[str]:
        """The addresses of the disabled accounts, sorted."""
