"""IMAP on a 100,000-message mailbox: SELECT, UID FETCH 1:* (FLAGS), SEARCH, ENVELOPE.

Owns the large-mailbox check from issue 3: the mailbox is filled by doubling with
COPY inside the store (one blob, metadata copied with each row), then a raw IMAP client
on 127.0.0.1 times the commands a syncing client sends first. Run:

    .venv/bin/python -m bench.imap_large_mailbox [--messages 100000]

Invariants: everything lives in a temporary directory and listens on 127.0.0.1 only;
the numbers printed are wall-clock seconds for one command each, answer fully read.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import resource
import tempfile
import time
from pathlib import Path

from postroom.accounts.service import AccountService
from postroom.config import Config
from postroom.dns.live import LiveResolver
from postroom.imap.session import ImapServer
from postroom.mail.mimetree import message_meta
from postroom.runtime import Runtime
from postroom.store.api import FlagMode, NewMessage
from postroom.store.changes import ChangeFeed
from postroom.store.sqlite import sqlite_store
from postroom.tls.contexts import TlsContexts
from postroom.tls.selfsigned import ensure_self_signed

USER = "bench@bench.test"
PASSWORD = "bench-password-1"
MESSAGE = (b"From: Sender <sender@example.org>\r\nTo: bench@bench.test\r\n"
           b"Subject: benchmark message\r\nDate: Mon, 7 Feb 1994 21:52:25 -0800\r\n"
           b"Message-ID: <bench@example.org>\r\n\r\n" + b"body line\r\n" * 40)


async def fill(runtime: Runtime, count: int) -> int:
    store = runtime.store
    account = await runtime.accounts.add_account(USER, PASSWORD)
    box = await store.get_mailbox(account.id, "INBOX")
    assert box is not None
    blob_id = await runtime.blobs.put(MESSAGE)
    meta = message_meta(MESSAGE)
    await store.append_message(box.id, NewMessage(blob_id, len(MESSAGE),
                                                  dt.datetime.now(dt.UTC), frozenset(), meta))
    total = 1
    while total < count:
        uids = [row.uid for row in await store.list_messages(box.id)][: count - total]
        await store.copy_messages(box.id, uids, box.id)
        total += len(uids)
    # Mark every tenth message seen so SEARCH UNSEEN has something to separate.
    uids = [row.uid for row in await store.list_messages(box.id)]
    await store.store_flags(box.id, uids[::10], frozenset({"\\Seen"}), FlagMode.ADD)
    return total


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.counter = 0

    async def command(self, text: str) -> tuple[float, int]:
        """(seconds, response lines) for one command, answer fully read."""
        self.counter += 1
        tag = f"b{self.counter}".encode()
        started = time.perf_counter()
        self.writer.write(tag + b" " + text.encode() + b"\r\n")
        lines = 0
        while True:
            line = await self.reader.readline()
            lines += 1
            if line.startswith(tag + b" "):
                assert line.startswith(tag + b" OK"), line
                return time.perf_counter() - started, lines


COMMANDS = (
    "SELECT INBOX",
    "UID FETCH 1:* (FLAGS)",
    "UID SEARCH UNSEEN",
    "SEARCH SEEN LARGER 100",
    "UID SEARCH FROM sender",
    "UID SEARCH BODY line",
    "FETCH 1:1000 (ENVELOPE BODYSTRUCTURE)",
    "FETCH 1:1000 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])",
    "NOOP",
)


def bench_config(root: Path) -> Config:
    ensure_self_signed(root / "cert.pem", root / "key.pem", "bench.test")
    return Config.model_validate({
        "DATA_DIR": root / "data", "OVERRIDE_HOSTNAME": "bench.test", "SSL_TYPE": "manual",
        "SSL_CERT_PATH": root / "cert.pem", "SSL_KEY_PATH": root / "key.pem",
    })  # fmt: skip


async def open_bench_runtime(config: Config) -> Runtime:
    feed = ChangeFeed()
    store, blobs = sqlite_store(config.db_path, config.data_dir / "blobs", feed)
    await store.open()
    return Runtime(config=config, store=store, blobs=blobs, feed=feed,
                   accounts=AccountService(store),
                   tls=TlsContexts(config.cert_path, config.key_path),
                   resolver=LiveResolver(config.nameservers))  # fmt: skip


async def time_commands(runtime: Runtime) -> None:
    # implicit_tls=True on a plain socket: LOGIN is allowed and the bench times IMAP, not TLS.
    server = await asyncio.start_server(ImapServer(runtime, True).handle_connection,
                                        "127.0.0.1", 0)  # fmt: skip
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**20)
    await reader.readline()
    client = Client(reader, writer)
    await client.command(f'LOGIN {USER} "{PASSWORD}"')
    for text in COMMANDS:
        seconds, lines = await client.command(text)
        print(f"{text:55s} {seconds:7.3f}s  {lines} lines")
    writer.close()
    server.close()


async def run(count: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        runtime = await open_bench_runtime(bench_config(Path(folder)))
        try:
            started = time.perf_counter()
            total = await fill(runtime, count)
            print(f"filled {total} messages in {time.perf_counter() - started:.1f}s")
            await time_commands(runtime)
        finally:
            await runtime.store.close()
        print(f"peak RSS {peak_rss_mb():.0f} MB")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    args = parser.parse_args()
    asyncio.run(run(args.messages))


if __name__ == "__main__":
    main()
