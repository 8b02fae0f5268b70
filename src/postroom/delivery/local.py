"""Final delivery into a local mailbox, and the room a mailbox has left.

Owns the last step every inbound path shares (SMTP now; bounces and import later): given
a durable blob and its pre-computed meta, append it to one account's mailbox. Invariant:
the blob is already fsynced (store/blobs.py) and `append_message` commits before this
returns, so a caller may acknowledge the message once every delivery has returned.
A named mailbox that does not exist (renamed or deleted by the user) falls back to INBOX,
so a filter's choice never loses mail.

Also the one place every path that adds messages checks the storage limits:
MAX_MESSAGES_PER_MAILBOX and POSTFIX_MAILBOX_SIZE_LIMIT (issue 25) and the account's own
quota (issue 17; what a setting means is accounts/quota.py's). `room_in` reads them in
one `QuotaStore.quota_usage` query of the counters the database keeps by trigger;
`limit_reached` decides from it; IMAP APPEND/COPY/MOVE and SMTP RCPT/DATA call them. The
check comes before the write, not in its transaction: writers racing for the last room
can overshoot a limit by what they add together, never without bound.
"""

from __future__ import annotations

import datetime as dt

from postroom.accounts.quota import Full, QuotaPolicy, Room, read_room
from postroom.config import Config
from postroom.errors import TryLater
from postroom.mail.dsn import DsnAction, DsnRecipient
from postroom.store.api import Mailbox, Mailstore, MessageRow, NewMessage, Store

INBOX = "INBOX"
__all__ = ["INBOX", "Full", "MailboxFull", "Room", "limit_reached", "room_in"]


class MailboxFull(TryLater):
    """A delivery the mailbox has no room for: temporary (SMTP 452 4.2.2), so the sender
    retries once the owner has made room (RFC 3463 X.2.2 "mailbox full")."""

    def __init__(self, full: Full, mailbox: str) -> None:
        super().__init__(f"mailbox {mailbox} full: {full.value} limit")
        self.full = full


async def room_in(store: Store, config: Config, mailbox_id: int) -> Room:
    """The room the mailbox and its account have, in one query (NotFound: no mailbox)."""
    return await read_room(store, QuotaPolicy.from_config(config), mailbox_id)


async def limit_reached(store: Store, config: Config, mailbox_id: int, *, messages: int,
                        size: int, adds_size: bool = True) -> Full | None:  # fmt: skip
    """Whether adding `messages` messages of `size` bytes in all to the mailbox would
    break a limit. `adds_size` False: they stay in the account (MOVE)."""
    room = await room_in(store, config, mailbox_id)
    return room.full_for(messages=messages, size=size, adds_to_account=adds_size)


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
    store: Store,
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


def delivered_notice(address: str, notify: tuple[str, ...], orcpt: str | None, *,
                     local: int, remote: int) -> DsnRecipient | None:
    """The success DSN line for an RCPT with NOTIFY=SUCCESS (RFC 3461 §4.1) once its
    `local` copies are stored here: `delivered` into one mailbox (§5.2.3), `expanded` when
    an alias took it to several (§5.2.7.3, RFC 3464 §2.3.3). None when no report was
    asked for, or when it reached only remote addresses (the queue reports on those)."""
    if "SUCCESS" not in notify or not local:
        return None
    action = DsnAction.DELIVERED if local + remote == 1 else DsnAction.EXPANDED
    return DsnRecipient(address, action, "2.0.0", "", is_smtp_diagnostic=False,
                        original_recipient=orcpt or "")
