"""The inbound check interface: stages, verdicts, and what a check is.

Owns the contract between the SMTP receiver and every inbound check (maddy's
CheckResult, aiosmtpd's per-stage hooks). A check is an object with a `name`, a `timeout`
(seconds, None: none of ours), `fail_open` (what a timeout or an unexpected exception
means: go on as if it had accepted, or answer 451), and any of the stage methods
`on_connect`, `on_mail`, `on_rcpt`, `on_message`; a stage it does not define costs
nothing. Each returns a `Verdict`; checks/pipeline.py runs them in the order app.py lists
them and merges what they return.

Invariants: a verdict names its reply (`CheckReply`: code, enhanced status, text), so no
check imports a protocol package; `ACCEPT` is one shared object, so a check with nothing
to say allocates nothing; checks see the message through delivery/transit.py only and
never change it: what they want done (a header added, a folder chosen) is in the verdict.
Errors of errors.py's vocabulary (Refused, TryLater — a storage failure —, BadSyntax)
raised by a check are answers, not failures: they pass through to the session (rule 4).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

# Symbol lives with the message in transit (delivery/ scores per recipient too, and may not
# import checks/); it is this module's as much as any check's.
from postroom.delivery.transit import ClientInfo, Envelope, ReceivedMessage, Symbol


class Stage(enum.Enum):
    CONNECT = "on_connect"  # before the greeting: the client's address and trust
    MAIL = "on_mail"  # MAIL FROM, once the session's own rules accepted it
    RCPT = "on_rcpt"  # each RCPT TO the session would accept
    MESSAGE = "on_message"  # after DATA, header scanned, before anything is stored


class Action(enum.IntEnum):
    """Ordered by strength: merging keeps the strongest."""

    ACCEPT = 0
    QUARANTINE = 1  # deliver, but into `Verdict.folder` instead of INBOX
    TEMPFAIL = 2  # 4xx: the client tries again later
    REFUSE = 3  # 5xx: nothing stored


@dataclass(frozen=True, slots=True)
class CheckReply:
    """A named SMTP reply in plain values: RFC 5321 code, RFC 3463 enhanced status."""

    code: int
    status: str
    text: str


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action = Action.ACCEPT
    reply: CheckReply | None = None  # required for TEMPFAIL and REFUSE
    headers: tuple[bytes, ...] = ()  # CRLF-terminated fields to add above Received
    folder: str = ""  # QUARANTINE: the mailbox local copies go to
    score: float = 0.0  # the sum of `symbols`' scores, added up over every stage
    reason: str = ""  # for the log
    symbols: tuple[Symbol, ...] = ()  # what made up `score`, in check order

    @classmethod
    def scored(cls, *symbols: Symbol, reason: str = "") -> Verdict:
        """An accepting verdict carrying symbols, its score their sum."""
        return cls(score=sum(symbol.score for symbol in symbols), reason=reason,
                   symbols=symbols)

    @property
    def is_refusal(self) -> bool:
        return self.action >= Action.TEMPFAIL


ACCEPT = Verdict()


def refuse(reply: CheckReply, reason: str = "") -> Verdict:
    return Verdict(Action.REFUSE if reply.code >= 500 else Action.TEMPFAIL, reply,
                   reason=reason)


def quarantine(folder: str, reason: str = "", headers: tuple[bytes, ...] = ()) -> Verdict:
    return Verdict(Action.QUARANTINE, folder=folder, reason=reason, headers=headers)


class Check(Protocol):
    """What the pipeline needs of every check; the stage methods are optional:

        async def on_connect(self, client: ClientInfo) -> Verdict
        async def on_mail(self, client: ClientInfo, sender: str) -> Verdict
        async def on_rcpt(self, envelope: Envelope, address: str) -> Verdict
        async def on_message(self, message: ReceivedMessage) -> Verdict

    `on_rcpt` may record in the envelope what it learnt (SPF's result, which DMARC
    reads after DATA); nothing else in the envelope or the message is a check's to change.
    """

    @property
    def name(self) -> str: ...

    @property
    def timeout(self) -> float | None: ...

    @property
    def fail_open(self) -> bool: ...


__all__ = ["ACCEPT", "Action", "Check", "CheckReply", "ClientInfo", "Envelope",
           "ReceivedMessage", "Stage", "Symbol", "Verdict", "quarantine", "refuse"]
