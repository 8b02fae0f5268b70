"""What the checks that hand a message to an outside scanner (rspamd, clamd) share: reading
the message in chunks, and the one answer for a scanner that could not answer.

Owns `ScannerError` (the scanner is down, closed on us, or said something we cannot
read), `body_chunks` and `scan_guarded`, which runs one scan under FILTER_TIMEOUT and turns
every failure to scan into the same verdict: `451 4.7.1` (the client keeps the message and
tries again: nothing is lost), or with FILTER_FAIL_OPEN=1 an accepted message carrying
`X-Postroom-Filter: unscanned (<scanner>: <reason>)`. Either way one log line says which
scanner failed and why.

Invariants: mail is never accepted unscanned without that header; a spooled body is read
off the event loop, one chunk at a time, so a scan holds at most one chunk per message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable
from pathlib import Path

from postroom.checks.api import Action, CheckReply, ReceivedMessage, Verdict

log = logging.getLogger("postroom.checks")

CHUNK = 64 * 1024
UNSCANNED_REPLY = CheckReply(451, "4.7.1", "Content scanner unavailable, try again later")
UNSCANNED_FIELD = "X-Postroom-Filter"


class ScannerError(Exception):
    """The scanner could not be reached, or answered what we cannot read."""


async def body_chunks(message: ReceivedMessage, size: int = CHUNK
                      ) -> AsyncGenerator[bytes, None]:
    """The message as received, in chunks of at most `size` bytes."""
    if message.body is not None:
        for start in range(0, len(message.body), size):
            yield message.body[start : start + size]
        return
    source = await asyncio.to_thread(message.spool_path.open, "rb")
    try:
        while chunk := await asyncio.to_thread(source.read, size):
            yield chunk
    finally:
        source.close()


async def body_size(message: ReceivedMessage) -> int:
    if message.body is not None:
        return len(message.body)
    path: Path = message.spool_path
    return (await asyncio.to_thread(path.stat)).st_size


def unscanned(scanner: str, reason: str, *, fail_open: bool, queue_id: str) -> Verdict:
    """The verdict for a message `scanner` could not judge (see the module docstring)."""
    if fail_open:
        log.warning("queue_id=%s %s unavailable (%s): accepted unscanned (FILTER_FAIL_OPEN)",
                    queue_id, scanner, reason)
        field = f"{UNSCANNED_FIELD}: unscanned ({scanner}: {reason})\r\n"
        return Verdict(headers=(field.encode("ascii", "replace"),),
                       reason=f"{scanner} unscanned")
    log.warning("queue_id=%s %s unavailable (%s): 451, the client retries", queue_id,
                scanner, reason)
    return Verdict(Action.TEMPFAIL, UNSCANNED_REPLY, reason=f"{scanner} unavailable")


async def scan_guarded(scanner: str, scan: Awaitable[Verdict], message: ReceivedMessage, *,
                       seconds: float, fail_open: bool) -> Verdict:
    """`scan`'s verdict, or `unscanned` when it timed out, could not connect or read
    garbage. Any other exception is a bug and propagates (the pipeline's 451 4.3.0)."""
    try:
        async with asyncio.timeout(seconds):
            return await scan
    except TimeoutError:
        reason = f"no answer within {seconds:g}s"
    except (OSError, ScannerError, asyncio.IncompleteReadError) as error:
        reason = _describe(error)
    return unscanned(scanner, reason, fail_open=fail_open, queue_id=message.queue_id)


def _describe(error: BaseException) -> str:
    if isinstance(error, asyncio.IncompleteReadError):
        return "connection closed mid-answer"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, FileNotFoundError):
        return "no such socket"
    text = str(error) or type(error).__name__
    return " ".join(text.split())[:200]
