"""The cross-node change feed: PostgreSQL LISTEN/NOTIFY into the local `ChangeFeed`.

Owns the notification channel name, the payload format and the one dedicated connection
each node keeps in LISTEN. `store/postgres.py` sends a NOTIFY inside every write
transaction that changed a mailbox (PostgreSQL delivers it at COMMIT, never on ROLLBACK),
and publishes the same change to its own node's feed right after COMMIT.

Invariants: a node republishes every notification from *other* nodes and skips only its
own (already published locally, without the round trip), so an IDLE session on node B
hears about a delivery on node A. Subscribers re-read the store on any event, so a
notification lost while the listener reconnects costs latency, never data; after a
reconnect the listener does not guess what it missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import psycopg

from postroom.loops import cancel_and_wait
from postroom.store.api import Change

CHANNEL = "postroom_changes"
_RECONNECT_SECONDS = 1.0
_START_SECONDS = 30.0

log = logging.getLogger("postroom.store")

ChangePublisher = Callable[[Change], None]  # ChangeFeed.publish


def render_payload(node_id: str, change: Change) -> str:
    """`node account mailbox kind,kind`: short, well under NOTIFY's 8000-byte limit.
    postgres.py's one-statement append builds the same text in SQL (`_APPEND_CTE`)."""
    return f"{node_id} {change.account_id} {change.mailbox_id} {','.join(sorted(change.kinds))}"


def parse_payload(payload: str) -> tuple[str, Change] | None:
    """The node id and the change, or None for a payload this version does not know."""
    parts = payload.split(" ")
    if len(parts) != 4 or not parts[1].isdigit() or not parts[2].isdigit():
        return None
    kinds = frozenset(kind for kind in parts[3].split(",") if kind)
    return parts[0], Change(int(parts[1]), int(parts[2]), kinds)


class NotifyListener:
    """One LISTEN connection feeding `publish` with changes made by other nodes."""

    def __init__(self, url: str, node_id: str, publish: ChangePublisher) -> None:
        self._url = url
        self._node_id = node_id
        self._publish = publish
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()

    async def start(self) -> None:
        """Returns once LISTEN is active, so no change committed after it is missed."""
        self._task = asyncio.create_task(self._run(), name="postroom-pg-listen")
        waiter = asyncio.create_task(self._listening.wait())
        done, _ = await asyncio.wait({waiter, self._task}, timeout=_START_SECONDS,
                                     return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        if waiter not in done:
            waiter.cancel()
            await self.stop()
            raise TimeoutError("could not LISTEN on the PostgreSQL change channel")

    async def stop(self) -> None:
        task, self._task = self._task, None
        with contextlib.suppress(Exception):
            await cancel_and_wait(task)

    async def _run(self) -> None:
        while True:
            try:
                await self._listen_once()
            except (psycopg.OperationalError, psycopg.InterfaceError) as error:
                log.warning("change feed connection lost (%s); reconnecting", error)
            # Backoff between reconnects to a database that is down (not synchronisation).
            await asyncio.sleep(_RECONNECT_SECONDS)

    async def _listen_once(self) -> None:
        conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
        try:
            await conn.execute(f"LISTEN {CHANNEL}")
            self._listening.set()
            async for notify in conn.notifies():
                self._deliver(notify.payload)
        finally:
            with contextlib.suppress(Exception):
                await conn.close()

    def _deliver(self, payload: str) -> None:
        parsed = parse_payload(payload)
        if parsed is None:
            log.debug("ignoring change notification %r", payload)
            return
        node_id, change = parsed
        if node_id != self._node_id:
            self._publish(change)
