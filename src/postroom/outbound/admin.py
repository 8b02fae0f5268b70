"""What `postroom queue list | flush | delete` do, independent of the CLI's output.

Owns the admin operations on the outbound queue; they work on the store directly, so the
CLI can run them while `postroom serve` runs in another process (the CLI wakes the
server with SIGUSR1; any other node notices flushed rows at its next poll, within
`worker.POLL_SECONDS`).

Invariant: flush never touches a row under a lease in force — some worker, maybe on
another node, is delivering it now; making it due again would deliver it twice.
"""

from __future__ import annotations

from postroom.clock import Clock
from postroom.outbound.model import QueuedMessage, summarize_queue
from postroom.store.api import Store


async def list_queued(store: Store) -> list[QueuedMessage]:
    """One item per queued message: sender, recipients, attempts, next try, last error."""
    return summarize_queue(await store.list_queue())


async def flush_queue(store: Store, clock: Clock, message_id: str | None = None) -> int:
    """Make every queued recipient (or only those of `message_id`) not being delivered
    right now (no lease in force) due now; returns how many rows changed."""
    return await store.flush_queue(clock.now(), message_id)


async def delete_queued(store: Store, message_id: str) -> int:
    """Drop a queued message (all its recipients) without a bounce; returns rows removed."""
    return await store.delete_queue_message(message_id)
