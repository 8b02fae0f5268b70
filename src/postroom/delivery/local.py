"""Final delivery into a local mailbox, and the room a mailbox has left.

Owns the last step every inbound path shares (SMTP now; bounces and import later): given
a durable blob and its pre-computed meta, append it to one account's mailbox. Invariant:
the blob is already fsynced (store/blobs.py) and `append_message` commits before this
returns, so a caller may acknowledge the message once every delivery has returned.
A named mailbox that does not exist (renamed or deleted by the user) falls back to INBOX,
so a filter's choice never loses mail.

Also owns the two storage limits every path that adds messages checks (issue 25):
MAX_MESSAGES_PER_MAILBOX and POSTFIX_MAILBOX_SIZE_LIMIT (bytes per account over all its
mailboxes, 0 = none). `limit_reached` decides from one `Store.mailbox_usage` read of the
counters the database keeps by trigger; IMAP APPEND/COPY/MOVE and SMTP RCPT/DATA call
it. The check comes before the write, not in its transaction: writers racing for the
last room can overshoot a limit by what they add together, never without bound.
"""

from __future__ import annotations

import datetime as dt
import enum

from postroom.config import Config
from postroom.errors import TryLater
from postroom.store.api import Mailbox, Mailstore, MessageRow, NewMessage

INBOX = "INBOX"


class Full(enum.Enum):
    """Which limit an addition would break; the value is the IMAP response code."""

    MESSAGES = "LIMIT"  # RFC 5530 §3: an implementation limit (messages per mailbox)
    ACCOUNT_SIZE = "OVERQUOTA"  # RFC 9208 §4.3 / RFC 5530: the account's storage is used up


class MailboxFull(TryLater):
    """A delivery the mailbox has no room for: temporary (SMTP 452 4.2.2), so the sender
    retries once the owner has made room (RFC 3463 X.2.2 "mailbox full")."""

    def __init__(self, full: Full, mailbox: str) -> None:
        what = "too many messages" if full is Full.MESSAGES else "account size limit"
        super().__init__(f"mailbox {mailbox} full: {what}")
        self.full = full


async def limit_reached(store: Mailstore, config: Config, mailbox_id: int, *, messages: int,
                        size: int, adds_size: bool = True) -> Full | None:  # fmt: skip
    """Whether adding `messages` messages of `size` bytes in all to the mailbox would
    break a limit. `adds_size` False: the bytes stay in the account (MOVE)."""
    usage = await store.mailbox_usage(mailbox_id)
    if usage.mailbox_messages + messages > config.max_messages_per_mailbox:
        return Full.MESSAGES
    limit = config.mailbox_size_limit
    if adds_size and limit and usage.account_size + size > limit:
        return Full.ACCOUNT_SIZE
    return None


async def delivery_mailbox(store: Mailstore, account_id: int, mailbox: str = INBOX) -> Mailbox:
    """Where a delivery to `mailbox` of the account goes: that mailbox, else INBOX."""
    target = await store.get_mailbox(account_id, mailbox)
    if target is None and mailbox != INBOX:
        target = await store.get_mailbox(account_id, INBOX)
    if target is None:
        # The account was deleted mid-transaction, or its INBOX is missing: let the
        # sender retry rather than acknowledge mail nobody will see.
        raise TryLater(f"account {account_id} has no {mailbox} or INBOX")
    return target


async def append_delivered(store: Mailstore, target: Mailbox, blob_id: str, size: int, meta: str,
                           flags: frozenset[str] = frozenset(),
                           internal_date: dt.datetime | None = None,
                           body: bytes | None = None) -> MessageRow:  # fmt: skip
    """Append to a mailbox `delivery_mailbox` chose (`body`: see `deliver_local`)."""
    when = internal_date or dt.datetime.now(dt.UTC)
    return await store.append_message(
        target.id, NewMessage(blob_id, size, when, frozenset(flags), meta), body=body)


async def deliver_local(
    store: Mailstore,
    account_id: int,
    blob_id: str,
    size: int,
    meta: str,
    mailbox: str = INBOX,
    flags: frozenset[str] = frozenset(),
    internal_date: dt.datetime | None = None,
    body: bytes | None = None,  # blob `blob_id` not written yet: the store writes it
    *,
    limits: Config | None = None,
) -> MessageRow:
    """Deliver one message; with `limits`, a mailbox without room for it raises
    `MailboxFull` (without, e.g. for DSNs, the limits are not checked)."""
    target = await delivery_mailbox(store, account_id, mailbox)
    if limits is not None:
        full = await limit_reached(store, limits, target.id, messages=1, size=size)
        if full is not None:
            raise MailboxFull(full, target.name)
    return await append_delivered(store, target, blob_id, size, meta, flags, internal_date,
                                  body)  # fmt: skip
