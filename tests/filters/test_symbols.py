"""Scores and symbols through the pipeline (checks/pipeline.py): summed over the checks
of a stage, RCPT-stage symbols kept once per transaction and carried into the MESSAGE
stage's verdict (the session copies them into the message)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from postroom.checks import Pipeline, Symbol, Verdict
from postroom.checks.api import Envelope, ReceivedMessage
from postroom.delivery.transit import AcceptedRecipient, ClientInfo
from postroom.mail.esmtp import MailParams, RcptParams

CLIENT = ClientInfo("192.0.2.1", "client.test", True)


@dataclass
class Scoring:
    name: str
    rcpt: tuple[Symbol, ...] = ()
    message: tuple[Symbol, ...] = ()
    timeout: float | None = None
    fail_open: bool = True

    async def on_rcpt(self, envelope: Envelope, address: str) -> Verdict:
        return Verdict.scored(*self.rcpt)

    async def on_message(self, message: ReceivedMessage) -> Verdict:
        return Verdict.scored(*self.message, reason=self.name)


async def test_symbols_add_up_over_every_stage() -> None:
    pipeline = Pipeline([Scoring("a", rcpt=(Symbol("RCPT_A", 1.5),),
                                 message=(Symbol("MSG_A", 2.0, "why"),)),
                         Scoring("b", message=(Symbol("MSG_B", -0.5),))])
    envelope = Envelope("Q1", CLIENT, "a@remote.test", MailParams())
    for address in ("u@example.test", "v@example.test"):  # two RCPTs: counted once
        verdict = await pipeline.on_rcpt(envelope, address)
        assert verdict.score == 1.5
    assert envelope.symbols == [Symbol("RCPT_A", 1.5)]
    message = ReceivedMessage("Q1", CLIENT, "a@remote.test", MailParams(),
                              [AcceptedRecipient("u@example.test", RcptParams())],
                              Path("/nonexistent"), 10, dt.datetime.now(dt.UTC), body=b"x",
                              symbols=tuple(envelope.symbols))
    verdict = await pipeline.on_message(message)
    assert verdict.score == 3.0
    assert [s.name for s in verdict.symbols] == ["RCPT_A", "MSG_A", "MSG_B"]
    assert verdict.symbols[1].detail == "why"
    assert verdict.reason == "a; b"


def test_scored_sums_its_symbols() -> None:
    verdict = Verdict.scored(Symbol("X", 2), Symbol("Y", 0.25))
    assert (verdict.score, verdict.is_refusal) == (2.25, False)
