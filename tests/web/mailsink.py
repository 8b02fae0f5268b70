"""Mail around the self-service tests (issue 21): a loopback SMTP sink standing in for
the Internet (the App relays every outbound message to it: DEFAULT_RELAY_HOST), an App
wired to it, and mail sent to USER from an outside address over SMTP."""

from __future__ import annotations

import smtplib
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from aiosmtpd.controller import Controller

from tests.support.server import AppThread
from tests.web.conftest import USER, StartWebApp

OUTSIDE = "friend@remote.example"


@dataclass
class Sink:
    received: list[tuple[str, list[str], bytes]] = field(default_factory=list)

    async def handle_DATA(self, _server: object, _session: object, envelope: object) -> str:
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos),  # type: ignore[attr-defined]
                              envelope.content))  # type: ignore[attr-defined]
        return "250 2.0.0 accepted"


@pytest.fixture
def sink() -> Iterator[tuple[Sink, int]]:
    """A loopback SMTP server every outbound message is relayed to (DEFAULT_RELAY_HOST)."""
    handler = Sink()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def wait_for(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def send_from_outside(app: AppThread, subject: str) -> None:
    message = (f"From: {OUTSIDE}\r\nTo: {USER}\r\nSubject: {subject}\r\n"
               f"Message-ID: <{subject.replace(' ', '.')}@remote.example>\r\n\r\nHello.\r\n")
    with smtplib.SMTP("127.0.0.1", app.port("smtp"), timeout=30) as smtp:
        smtp.ehlo("mx.remote.example")
        smtp.sendmail(OUTSIDE, [USER], message.encode())


@pytest.fixture
def mail_app(web_app: StartWebApp, sink: tuple[Sink, int]) -> Iterator[AppThread]:
    with web_app(DEFAULT_RELAY_HOST=f"[127.0.0.1]:{sink[1]}", ENABLE_DNSBL=0) as app:
        yield app
