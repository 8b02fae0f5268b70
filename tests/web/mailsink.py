"""Mail around the self-service tests (issue 21): a loopback SMTP sink standing in for
the Internet (the App relays every outbound message to it: DEFAULT_RELAY_HOST), an App
wired to it, and mail sent to USER from an outside address over SMTP."""

from __future__ import annotations

import smtplib
import time
from collections.abc import Callable, Iterator

import pytest

from tests.support.server import AppThread
from tests.support.smtpsink import Sink
from tests.web.conftest import USER, StartWebApp

OUTSIDE = "friend@remote.example"




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
