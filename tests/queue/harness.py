"""Building blocks for queue tests: a Runtime over a fresh store whose config
points outbound SMTP at a fake MX, a fixed-jitter RNG, and message helpers."""

from __future__ import annotations

import contextlib
import email
import email.policy
import random
import sqlite3
from email.message import EmailMessage
from pathlib import Path

from postroom.config import Config
from postroom.runtime import Runtime
from postroom.store.sqliteblobs import SqliteBlobStore
from tests.conftest import make_config

LOCAL_DOMAIN = "example.test"
ALICE = "alice@example.test"


class NoJitter(random.Random):
    """random() is always 0.5: back-off delays come out exact; MX order stays stable."""

    def random(self) -> float:
        return 0.5


def queue_config(tmp_path: Path, server_cert: tuple[Path, Path], mx_port: int,
                 **overrides: object) -> Config:
    values: dict[str, object] = {"OUTBOUND_SMTP_PORT": mx_port}
    values.update(overrides)
    return make_config(tmp_path, server_cert, **values)


def message(subject: str = "hello", sender: str = ALICE, to: str = "bob@remote.test",
            extra: bytes = b"") -> bytes:
    return (f"Return-Path: <{sender}>\r\n".encode() + extra
            + f"From: Alice <{sender}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n"
              f"Date: Sun, 1 Mar 2026 10:00:00 +0000\r\n"
              f"Message-ID: <{subject}@example.test>\r\n\r\nHi there.\r\n".encode())


async def spool(runtime: Runtime, raw: bytes) -> str:
    return await runtime.blobs.put(raw)


async def inbox_messages(runtime: Runtime, address: str) -> list[EmailMessage]:
    store = runtime.store
    account = await store.get_account(address)
    assert account is not None
    inbox = await store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    found = []
    for row in await store.list_messages(inbox.id):
        raw = await runtime.blobs.read(row.blob_id)
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        found.append(parsed)
    return found


def recipient_blocks(dsn: EmailMessage) -> list[email.message.Message]:
    assert dsn.get_content_type() == "multipart/report"
    status = dsn.get_payload()[1]
    assert status.get_content_type() == "message/delivery-status"
    blocks = status.get_payload()
    return blocks[1:]


async def blob_exists(runtime: Runtime, blob_id: str) -> bool:
    try:
        await runtime.blobs.read(blob_id)
    except FileNotFoundError:
        return False
    return True


async def blob_count(runtime: Runtime) -> int:
    """Bodies stored, whichever store holds them (files and rows, or PostgreSQL rows)."""
    blobs = runtime.blobs
    if isinstance(blobs, SqliteBlobStore):
        files = sum(1 for path in blobs.files.root.glob("??/*") if path.is_file())
        with contextlib.closing(sqlite3.connect(runtime.config.db_path)) as db:
            (rows,) = db.execute("SELECT count(*) FROM blob_data").fetchone()
        return files + int(rows)
    from postroom.store.pgblobs import PgBlobStore  # the PostgreSQL test pass

    assert isinstance(blobs, PgBlobStore)
    return len([blob_id async for blob_id in blobs.iter_ids()])
