"""Issue 25, finding 5: SMTP delivery to an account without room is 452 4.2.2 (temporary:
the sender retries), at RCPT when the account is full already, else after DATA when no
recipient has room; the other recipients of the transaction still get the mail.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest

from postroom.config import Config
from postroom.runtime import Runtime
from postroom.store.api import NewMessage
from tests.conftest import make_config
from tests.smtp.conftest import SIZE_LIMIT, RawClient, message, serve, stored_messages

ACCOUNT_LIMIT = 50_000
MAX_MESSAGES = 100


@pytest.fixture
def config(tmp_path: Path, server_cert: tuple[Path, Path]) -> Config:
    return make_config(tmp_path, server_cert, POSTFIX_MESSAGE_SIZE_LIMIT=SIZE_LIMIT,
                       POSTFIX_MAILBOX_SIZE_LIMIT=ACCOUNT_LIMIT,
                       MAX_MESSAGES_PER_MAILBOX=MAX_MESSAGES,
                       ENABLE_QUOTAS=0)  # issue 25's limits alone: no 80/95 % warnings  # fmt: skip


async def fill(runtime: Runtime, address: str, size: int, count: int = 1) -> None:
    """Put `count` messages of `size` bytes into the account's INBOX, bypassing SMTP."""
    account = await runtime.store.get_account(address)
    assert account is not None
    inbox = await runtime.store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    data = b"Subject: filler\r\n\r\n" + b"f" * (size - 19)
    blob_id = await runtime.blobs.put(data)
    await runtime.store.append_message(
        inbox.id, NewMessage(blob_id, len(data), dt.datetime.now(dt.UTC)))
    held = 1
    while held < count:  # doubling copies (the store itself refuses nothing)
        uids = [row.uid for row in await runtime.store.list_messages(inbox.id)]
        held += len((await runtime.store.copy_messages(
            inbox.id, uids[: count - held], inbox.id)).target_uids)


async def transaction(port: int, recipients: list[str], data: bytes,
                      mail_from: str = "MAIL FROM:<sender@remote.example>"
                      ) -> tuple[list[tuple[int, str]], tuple[int, str] | None]:  # fmt: skip
    """The RCPT replies and the DATA reply (None when no RCPT was accepted)."""
    client = await RawClient.connect(port)
    try:
        await client.reply()
        await client.command("EHLO client.example")
        assert (await client.command(mail_from))[0] == 250
        rcpts = [await client.command(f"RCPT TO:<{address}>") for address in recipients]
        if not any(code == 250 for code, _ in rcpts):
            return rcpts, None
        assert (await client.command("DATA"))[0] == 354
        await client.send(data + b"\r\n.\r\n")
        return rcpts, await client.reply()
    finally:
        await client.close()


async def test_full_account_refused_at_rcpt_others_still_served(accounts: Runtime) -> None:
    await fill(accounts, "user@example.test", ACCOUNT_LIMIT)
    async with serve(accounts) as (port, _):
        rcpts, data_reply = await transaction(
            port, ["user@example.test", "other@example.test"], message("for both"))
    assert rcpts[0][0] == 452 and rcpts[0][1].startswith("4.2.2 ")
    assert "Mailbox full" in rcpts[0][1]
    assert rcpts[1][0] == 250
    assert data_reply is not None and data_reply[0] == 250
    assert len(await stored_messages(accounts, "user@example.test")) == 1  # the filler only
    assert len(await stored_messages(accounts, "other@example.test")) == 1


async def test_declared_size_past_the_limit_refused_at_rcpt(accounts: Runtime) -> None:
    await fill(accounts, "user@example.test", ACCOUNT_LIMIT - 10_000)
    async with serve(accounts) as (port, _):
        rcpts, _ = await transaction(port, ["user@example.test"], message(),
                                     "MAIL FROM:<sender@remote.example> SIZE=20000")
        fits, reply = await transaction(port, ["user@example.test"], message(),
                                        "MAIL FROM:<sender@remote.example> SIZE=2000")
    assert rcpts[0][0] == 452
    assert fits[0][0] == 250 and reply is not None and reply[0] == 250


async def test_message_too_big_for_the_room_left_is_452_after_data(accounts: Runtime) -> None:
    await fill(accounts, "user@example.test", ACCOUNT_LIMIT - 5_000)
    big = message("big", b"b" * 10_000 + b"\r\n")
    async with serve(accounts) as (port, _):
        rcpts, alone = await transaction(port, ["user@example.test"], big)
        _, small = await transaction(port, ["user@example.test"], message("small"))
        # With a recipient that has room, both get it: one reply covers the transaction,
        # and RCPT refuses an account once it is full.
        _, shared = await transaction(port, ["user@example.test", "other@example.test"], big)
        again, _ = await transaction(port, ["user@example.test"], message("later"))
    assert rcpts[0][0] == 250
    assert alone == (452, "4.2.2 Mailbox full")
    assert small is not None and small[0] == 250
    assert shared is not None and shared[0] == 250
    assert again[0][0] == 452
    stored = await stored_messages(accounts, "user@example.test")
    assert len(stored) == 3
    assert b"Subject: small" in stored[1] and b"Subject: big" in stored[2]
    assert len(await stored_messages(accounts, "other@example.test")) == 1


async def test_message_count_cap(accounts: Runtime) -> None:
    await fill(accounts, "user@example.test", 100, count=MAX_MESSAGES)
    async with serve(accounts) as (port, _):
        rcpts, _ = await asyncio.wait_for(
            transaction(port, ["user@example.test"], message()), 10)
    assert rcpts[0][0] == 452 and rcpts[0][1].startswith("4.2.2 ")
