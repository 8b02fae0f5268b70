"""Where SELECT's time goes on a 100,000-message mailbox (tuning aid, not `make bench`).

Owns one manual run: fill a mailbox as bench/imap_large_mailbox.py does, then time the
pieces in-process — SELECT's store query (`select_summary`) and `open_selected`, then what
the first command needing flags adds (`list_flag_columns`, `load_tables`) — several times
each, printing the median. `--all-seen` marks every message \\Seen first (the first-unseen
search then finds none: its worst case).
Usage: `.venv/bin/python -m bench.profile_select [--messages 100000] [--repeats 7]`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.imap_large_mailbox import USER, bench_config, fill, open_bench_runtime
from postroom.imap.selected import open_selected
from postroom.store.api import FlagMode


async def _median_ms(action: Callable[[], Awaitable[Any]], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        await action()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def run(messages: int, repeats: int, is_all_seen: bool) -> None:
    with tempfile.TemporaryDirectory() as temp:
        runtime = await open_bench_runtime(bench_config(Path(temp)))
        try:
            await fill(runtime, messages)
            store = runtime.store
            account = await store.get_account(USER)
            assert account is not None
            box = await store.get_mailbox(account.id, "INBOX")
            assert box is not None
            if is_all_seen:
                uids = (await store.select_summary(box.id)).uids
                await store.store_flags(box.id, uids, frozenset({"\\Seen"}), FlagMode.ADD)
            query = await _median_ms(lambda: store.select_summary(box.id), repeats)
            print(f"select_summary         {query:8.1f} ms   (SELECT)")
            opened = await _median_ms(
                lambda: open_selected(store, box, is_read_only=True), repeats)
            print(f"open_selected          {opened:8.1f} ms   (SELECT)")
            columns = await _median_ms(lambda: store.list_flag_columns(box.id), repeats)
            print(f"list_flag_columns      {columns:8.1f} ms   (first command needing flags)")

            async def load() -> None:
                view = await open_selected(store, box, is_read_only=True)
                await view.load_tables(store)

            tables = await _median_ms(load, repeats) - opened
            print(f"load_tables            {tables:8.1f} ms   (first command needing flags)")
            full = await _median_ms(lambda: store.list_messages(box.id), 3)
            print(f"list_messages (before) {full:8.1f} ms")
        finally:
            await runtime.store.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--all-seen", action="store_true")
    args = parser.parse_args()
    asyncio.run(run(args.messages, args.repeats, args.all_seen))
    return 0


if __name__ == "__main__":
    sys.exit(main())
