"""Running the inbound checks: per stage, in app.py's order, merged into one verdict.

Owns the stage loop and the merge. A stage no check implements is an empty tuple and
returns `ACCEPT` at once. Merging: the first refusal (REFUSE or TEMPFAIL) wins and the
checks after it are not run (a cheap refusal spares the DNS work behind it); otherwise
headers accumulate in check order, the first quarantine folder chosen stays, scores add
up, symbols accumulate in check order and reasons are joined. Scores and symbols of the
RCPT stage are kept in the transaction (`Envelope.symbols`, recorded here; the session
copies them into `ReceivedMessage.symbols`) and the MESSAGE stage's verdict starts from
them, so the message's verdict carries the sum over the transaction. CONNECT and MAIL
checks decide (accept or refuse); a score there would have no message to go with.

Failure of a check (an unexpected exception, or its `timeout` passing): with
`fail_open` the stage goes on as if it had accepted (logged); without it the stage
answers TEMPFAIL — 451 4.7.1 for a timeout, the 451 4.3.0 of rule 4 for an exception
(logged with its traceback). Errors of errors.py's vocabulary are answers and pass
through. Invariant: no task, thread or timer is created for a check without a timeout.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from postroom.checks.api import (
    ACCEPT,
    Action,
    Check,
    CheckReply,
    ClientInfo,
    Envelope,
    ReceivedMessage,
    Stage,
    Verdict,
)
from postroom.errors import BadSyntax, Refused, TryLater
from postroom.metrics import note_verdict

log = logging.getLogger("postroom.checks")

# The words of rule 4 for an unexpected exception (smtp/replies.py LOCAL_ERROR).
CHECK_FAILED = CheckReply(451, "4.3.0", "Local error in processing, try again later")
CHECK_TIMED_OUT = CheckReply(451, "4.7.1", "Service unavailable, try again later")

_Step = tuple[Check, Callable[..., Awaitable[Verdict]]]


def merge(first: Verdict, second: Verdict) -> Verdict:
    """Two non-refusing verdicts as one (see the module docstring)."""
    if first is ACCEPT:
        return second
    reason = "; ".join(part for part in (first.reason, second.reason) if part)
    return Verdict(max(first.action, second.action), None, first.headers + second.headers,
                   first.folder or second.folder, first.score + second.score, reason,
                   first.symbols + second.symbols)


class Pipeline:
    """The ordered checks, split by stage once at start."""

    __slots__ = ("_stages", "checks")

    def __init__(self, checks: Sequence[Check] = ()) -> None:
        self.checks = tuple(checks)
        self._stages: dict[Stage, tuple[_Step, ...]] = {
            stage: tuple((check, getattr(check, stage.value)) for check in self.checks
                         if callable(getattr(check, stage.value, None)))
            for stage in Stage}

    def has(self, stage: Stage) -> bool:
        return bool(self._stages[stage])

    async def on_connect(self, client: ClientInfo) -> Verdict:
        return await self._run(Stage.CONNECT, client)

    async def on_mail(self, client: ClientInfo, sender: str) -> Verdict:
        return await self._run(Stage.MAIL, client, sender)

    async def on_rcpt(self, envelope: Envelope, address: str) -> Verdict:
        verdict = await self._run(Stage.RCPT, envelope, address)
        if verdict.symbols and not verdict.is_refusal:
            # The transaction's, until DATA ends; a symbol counts once however many
            # recipients gave it.
            known = {symbol.name for symbol in envelope.symbols}
            envelope.symbols.extend(s for s in verdict.symbols if s.name not in known)
        return verdict

    async def on_message(self, message: ReceivedMessage) -> Verdict:
        """The MESSAGE stage's verdict, its score and symbols those of the whole
        transaction (the RCPT stages' are in `message.symbols`)."""
        verdict = await self._run(Stage.MESSAGE, message)
        if not message.symbols or verdict.is_refusal:
            return verdict
        return merge(Verdict.scored(*message.symbols), verdict)

    async def _run(self, stage: Stage, *args: Any) -> Verdict:
        merged = ACCEPT
        for check, method in self._stages[stage]:
            verdict = await self._call(check, method, args)
            note_verdict(check.name, verdict.action.name.lower())
            if verdict is ACCEPT:
                continue
            if verdict.is_refusal:
                return verdict
            merged = merge(merged, verdict)
        return merged

    async def _call(self, check: Check, method: Callable[..., Awaitable[Verdict]],
                    args: tuple[Any, ...]) -> Verdict:
        try:
            if check.timeout is None:
                return await method(*args)
            async with asyncio.timeout(check.timeout):
                return await method(*args)
        except (Refused, TryLater, BadSyntax):
            raise
        except TimeoutError:
            return _failed(check, CHECK_TIMED_OUT, f"timed out after {check.timeout}s")
        except Exception:
            log.exception("check %s failed", check.name)
            return _failed(check, CHECK_FAILED, "failed")


def _failed(check: Check, reply: CheckReply, what: str) -> Verdict:
    if check.fail_open:
        log.warning("check %s %s: accepted (fail open)", check.name, what)
        return ACCEPT
    log.warning("check %s %s: try again later", check.name, what)
    return Verdict(Action.TEMPFAIL, reply, reason=f"{check.name} {what}")
