"""GTUBE, the Generic Test for Unsolicited Bulk Email: always recognised (issue 18).

Owns one symbol, `GTUBE`, with a fixed score far above any SA_KILL, so an administrator
can test the whole filtering path end to end (refused at SA_KILL, or filed into Junk
with SPAM_TO_INBOX=1) without a real spam sample, as SpamAssassin and rspamd do.

Invariant: the test string is looked for in the first `SCAN_LIMIT` bytes of the message
as received (header included, as rspamd matches it anywhere in the text); the scan runs
off the event loop for bodies larger than transit.ON_LOOP_LIMIT.
"""

from __future__ import annotations

import asyncio

from postroom.checks.api import ACCEPT, ReceivedMessage, Symbol, Verdict

GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
GTUBE_SCORE = 1000.0
SCAN_LIMIT = 1024 * 1024
_VERDICT = Verdict.scored(Symbol("GTUBE", GTUBE_SCORE, "the GTUBE test string"),
                          reason="GTUBE")


def contains_gtube(message: ReceivedMessage) -> bool:
    """Blocking when the message is in a spool file."""
    if message.body is not None:  # searched in place: no copy
        return message.body.find(GTUBE, 0, SCAN_LIMIT) >= 0
    with message.open_body() as body:
        return GTUBE in body.read(SCAN_LIMIT)


class GtubeCheck:
    name = "gtube"
    # None: no deadline of the pipeline's (a timer costs every message); reading a large
    # spool file is local and bounded by SCAN_LIMIT, and never on the loop.
    timeout: float | None = None
    fail_open = True

    async def on_message(self, message: ReceivedMessage) -> Verdict:
        if message.is_small:
            found = contains_gtube(message)
        else:
            found = await asyncio.to_thread(contains_gtube, message)
        return _VERDICT if found else ACCEPT
