"""A loopback SMTP sink standing in for the Internet: tests point DEFAULT_RELAY_HOST (or
OUTBOUND_SMTP_PORT) at it and read what the server sent out. Import `sink` (the fixture)
and `Sink` into a test module to use it."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from aiosmtpd.controller import Controller


@dataclass
class Sink:
    """aiosmtpd handler: every message as (MAIL FROM, RCPT TOs, content)."""

    received: list[tuple[str, list[str], bytes]] = field(default_factory=list)

    async def handle_DATA(self, _server: object, _session: object, envelope: object) -> str:
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos),  # type: ignore[attr-defined]
                              envelope.content))  # type: ignore[attr-defined]
        return "250 2.0.0 accepted"


@pytest.fixture
def sink() -> Iterator[tuple[Sink, int]]:
    """The sink's handler and port, on 127.0.0.1 for the test."""
    handler = Sink()
    with socket.socket() as probe:  # aiosmtpd's start() connects to the port it is given
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()
