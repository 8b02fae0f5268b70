"""Final delivery into a local mailbox.

Owns the last step every inbound path shares (SMTP now; bounces and import later): given
a durable blob and its pre-computed meta, append it to one account's mailbox. Invariant:
the blob is already fsynced (store/blobs.py) and `append_message` commits before this
returns, so a caller may acknowledge the message once every delivery has returned.
A named mailbox that does not exist (renamed or deleted by the user) falls back to INBOX,
so a filter's choice never loses mail.
"""

from __future__ import annotations

import datetime as dt

from postroom.errors import TryLater
from postroom.store.api import MessageRow, NewMessage, Store

INBOX = "INBOX"


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
) -> MessageRow:
    target = await store.get_mailbox(account_id, mailbox)
    if target is None and mailbox != INBOX:
        target = await store.get_mailbox(account_id, INBOX)
    if target is None:
        # The account was deleted mid-transaction, or its INBOX is missing: let the
        # sender retry rather than acknowledge mail nobody will see.
        raise TryLater(f"account {account_id} has no {mailbox} or INBOX")
    when = internal_date or dt.datetime.now(dt.UTC)
    return await store.append_message(
        target.id, NewMessage(blob_id, size, when, frozenset(flags), meta), body=body)
