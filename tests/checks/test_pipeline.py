"""The check pipeline (checks/pipeline.py) on its own: stage split, order, merging,
timeouts and failures mapped to fail-open or 451, errors of the vocabulary passed on."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from postroom.checks import ACCEPT, Action, CheckReply, Pipeline, Stage, Verdict, quarantine, refuse
from postroom.checks.pipeline import CHECK_FAILED, CHECK_TIMED_OUT, merge
from postroom.delivery.transit import (
    AcceptedRecipient,
    ClientInfo,
    Envelope,
    ReceivedMessage,
)
from postroom.errors import TryLater
from postroom.mail.esmtp import MailParams, RcptParams

CLIENT = ClientInfo("192.0.2.1", "client.test", True)
NOPE = CheckReply(550, "5.7.1", "nope")


def received() -> ReceivedMessage:
    return ReceivedMessage("Q1", CLIENT, "a@remote.test", MailParams(),
                           [AcceptedRecipient("u@example.test", RcptParams())],
                           Path("/nonexistent"), 10, dt.datetime.now(dt.UTC), body=b"x")


@dataclass
class Recording:
    """Answers `verdict` at MESSAGE (and RCPT) and notes that it ran in `log`."""

    name: str
    log: list[str]
    verdict: Verdict = ACCEPT
    timeout: float | None = None
    fail_open: bool = False

    async def on_rcpt(self, envelope: Envelope, address: str) -> Verdict:
        self.log.append(f"{self.name}:rcpt:{address}")
        return self.verdict

    async def on_message(self, message: ReceivedMessage) -> Verdict:
        self.log.append(f"{self.name}:message")
        return self.verdict


@dataclass
class Stuck:
    """A network service that never answers."""

    fail_open: bool
    name: str = "stuck"
    timeout: float | None = 0.05
    released: asyncio.Event = field(default_factory=asyncio.Event)

    async def on_message(self, message: ReceivedMessage) -> Verdict:
        await self.released.wait()
        return ACCEPT


@dataclass
class Broken:
    error: Exception
    fail_open: bool = False
    name: str = "broken"
    timeout: float | None = None

    async def on_mail(self, client: ClientInfo, sender: str) -> Verdict:
        raise self.error


async def test_stages_without_checks_accept_and_are_reported_empty() -> None:
    log: list[str] = []
    pipeline = Pipeline([Recording("a", log)])
    assert not pipeline.has(Stage.CONNECT) and not pipeline.has(Stage.MAIL)
    assert pipeline.has(Stage.RCPT) and pipeline.has(Stage.MESSAGE)
    assert await pipeline.on_connect(CLIENT) is ACCEPT
    assert await pipeline.on_mail(CLIENT, "a@remote.test") is ACCEPT
    assert log == []
    assert await Pipeline().on_message(received()) is ACCEPT


async def test_checks_run_in_order_and_the_first_refusal_stops_the_stage() -> None:
    log: list[str] = []
    pipeline = Pipeline([Recording("a", log), Recording("b", log, refuse(NOPE, "b says")),
                         Recording("c", log)])
    verdict = await pipeline.on_message(received())
    assert (verdict.action, verdict.reply, verdict.reason) == (Action.REFUSE, NOPE, "b says")
    assert log == ["a:message", "b:message"]  # c never ran
    envelope = Envelope("Q1", CLIENT, "a@remote.test", MailParams())
    assert (await pipeline.on_rcpt(envelope, "u@example.test")).reply == NOPE
    assert log[2:] == ["a:rcpt:u@example.test", "b:rcpt:u@example.test"]


def test_refuse_picks_tempfail_for_a_4xx() -> None:
    assert refuse(CheckReply(451, "4.7.1", "later")).action is Action.TEMPFAIL
    assert refuse(NOPE).action is Action.REFUSE
    assert refuse(NOPE).is_refusal and not quarantine("Junk").is_refusal


async def test_accepting_verdicts_merge_headers_folder_and_score() -> None:
    log: list[str] = []
    pipeline = Pipeline([
        Recording("a", log, Verdict(headers=(b"X-A: 1\r\n",), score=1.5, reason="a")),
        Recording("b", log, quarantine("Junk", "b", (b"X-B: 2\r\n",))),
        Recording("c", log, quarantine("Spam", "c")),
        Recording("d", log, Verdict(headers=(b"X-D: 4\r\n",), score=-0.5)),
    ])
    verdict = await pipeline.on_message(received())
    assert verdict.action is Action.QUARANTINE
    assert verdict.headers == (b"X-A: 1\r\n", b"X-B: 2\r\n", b"X-D: 4\r\n")
    assert verdict.folder == "Junk"  # the first folder chosen stays
    assert verdict.score == 1.0
    assert verdict.reason == "a; b; c"
    assert verdict.reply is None and not verdict.is_refusal


def test_merge_with_accept_is_the_other_verdict() -> None:
    other = Verdict(headers=(b"X: 1\r\n",))
    assert merge(ACCEPT, other) is other


async def test_a_check_that_times_out_fails_open_or_answers_451(
        caplog: pytest.LogCaptureFixture) -> None:
    log: list[str] = []
    after = Recording("after", log, Verdict(headers=(b"X-After: 1\r\n",)))
    with caplog.at_level(logging.WARNING, logger="postroom.checks"):
        opened = await Pipeline([Stuck(fail_open=True), after]).on_message(received())
    assert opened.headers == (b"X-After: 1\r\n",)  # the stage went on past it
    assert "check stuck timed out after 0.05s: accepted (fail open)" in caplog.text
    closed = await Pipeline([Stuck(fail_open=False), after]).on_message(received())
    assert (closed.action, closed.reply) == (Action.TEMPFAIL, CHECK_TIMED_OUT)
    assert CHECK_TIMED_OUT.code == 451 and CHECK_TIMED_OUT.status.startswith("4.7.")
    assert log == ["after:message"]  # not run after the 451


async def test_a_check_that_raises_fails_open_or_answers_451(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="postroom.checks"):
        opened = await Pipeline([Broken(RuntimeError("down"), fail_open=True)]).on_mail(
            CLIENT, "a@remote.test")
    assert opened is ACCEPT
    with caplog.at_level(logging.ERROR, logger="postroom.checks"):
        closed = await Pipeline([Broken(RuntimeError("down"))]).on_mail(CLIENT, "a@x.test")
    assert (closed.action, closed.reply) == (Action.TEMPFAIL, CHECK_FAILED)
    assert (CHECK_FAILED.code, CHECK_FAILED.status) == (451, "4.3.0")
    assert any(record.exc_info for record in caplog.records)  # rule 4: traceback logged


async def test_errors_of_the_vocabulary_are_answers_not_failures() -> None:
    pipeline = Pipeline([Broken(TryLater("store busy"), fail_open=True)])
    with pytest.raises(TryLater):
        await pipeline.on_mail(CLIENT, "a@remote.test")
