"""Helpers shared by the quota tests (issue 17): accounts filled without SMTP or IMAP."""

from __future__ import annotations

import datetime as dt

from postroom.runtime import Runtime
from postroom.store.api import NewMessage


def raw_message(size: int, subject: str = "filler") -> bytes:
    """A message of exactly `size` bytes."""
    head = f"Subject: {subject}\r\n\r\n".encode()
    assert size > len(head) + 2
    return head + b"f" * (size - len(head) - 2) + b"\r\n"


async def fill(runtime: Runtime, address: str, size: int, mailbox: str = "INBOX",
               count: int = 1) -> None:
    """Put `count` messages of `size` bytes each into the account's mailbox directly."""
    store = runtime.store
    account = await store.get_account(address)
    assert account is not None
    box = await store.get_mailbox(account.id, mailbox)
    assert box is not None
    for _ in range(count):
        data = raw_message(size)
        blob_id = await runtime.blobs.put(data)
        await store.append_message(box.id, NewMessage(blob_id, len(data), dt.datetime.now(dt.UTC)))
