"""The limits a mailbox name and an account's mailboxes keep (issue 25).

Owns `MailboxLimits` (MAX_MAILBOX_NAME_LENGTH, MAX_MAILBOX_DEPTH,
MAX_MAILBOXES_PER_ACCOUNT) and `name_problem`, used by IMAP CREATE/RENAME/SUBSCRIBE and
by the docker-mailserver importer, so a name one path refuses the other refuses too.
`MailboxLimits.quota` carries the quota policy (accounts/quota.py) to the importer, so
that its over-quota notes judge as delivery does (issue 17).
Invariant: `name_problem` accepts any `str` and never raises.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from postroom.accounts.quota import QuotaPolicy

if TYPE_CHECKING:
    from postroom.config import Config

SEPARATOR = "/"


@dataclass(frozen=True, slots=True)
class MailboxLimits:
    """MAX_MAILBOX_NAME_LENGTH (UTF-8 bytes of the full name), MAX_MAILBOX_DEPTH (levels),
    MAX_MAILBOXES_PER_ACCOUNT (mailboxes, and separately subscriptions). Dovecot's
    filesystem layouts stop a name at 255 bytes."""

    name_length: int = 255
    depth: int = 16
    mailboxes: int = 1000
    quota: QuotaPolicy = field(default_factory=QuotaPolicy)

    @classmethod
    def from_config(cls, config: Config) -> MailboxLimits:
        return cls(config.max_mailbox_name_length, config.max_mailbox_depth,
                   config.max_mailboxes_per_account, QuotaPolicy.from_config(config))  # fmt: skip


def name_problem(name: str, limits: MailboxLimits) -> str | None:
    """Why `name` may not be created, renamed to or subscribed, or None."""
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > limits.name_length:
        return (f"mailbox name is {size} bytes, over the limit of {limits.name_length}"
                " (MAX_MAILBOX_NAME_LENGTH)")
    depth = name.count(SEPARATOR) + 1
    if depth > limits.depth:
        return (f"mailbox name has {depth} levels, over the limit of {limits.depth}"
                " (MAX_MAILBOX_DEPTH)")
    return None
