"""The selftest's message: built as a user of the domain would send it, completed and
traced the way submission completes it, signed by the real outbound signer, and — with
`--to` — delivered through the real outbound client.

Owns `build_signed_message` and `send_direct`. Reuse, not copies: the Received field is
`mail.trace.render_received` with the queue id `smtp.receive.new_queue_id` makes, the
Date and Message-ID come from `mail.submission.missing_submission_headers` (exactly what
smtp/receive.py prepends for an authenticated client), the signature from
`outbound.signing.DkimSigner.signature_for` prepended as `QueueWorker.enqueue_message` does,
and delivery from `outbound.routing` (MX, relay host, OUTBOUND_SMTP_PORT) with
`outbound.client.OutboundSession` and the settings the queue worker gives it.

Why direct delivery for `--to` rather than the store's queue: the user sees the remote
server's answer at once, and a test address (an online tester) gets the very bytes that
were judged. A refusal is reported, not retried: this is a test, not mail to keep.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from postroom.clock import display_zone
from postroom.config import Config
from postroom.dns.resolver import Resolver
from postroom.mail.submission import missing_submission_headers
from postroom.mail.trace import TraceInfo, render_received
from postroom.outbound.client import ClientSettings, OutboundSession, SessionError
from postroom.outbound.routing import Route, RouteError, connect_first, resolve_route
from postroom.outbound.signing import DkimSigner
from postroom.smtp.receive import new_queue_id

# How long `--to` may take in all (route lookup, connecting, the transaction).
SEND_TIMEOUT = 120.0
_SEND_STEP_TIMEOUT = 30.0  # per connect / command, far below the queue's patient defaults


@dataclass(frozen=True, slots=True)
class SignedMessage:
    sender: str
    recipient: str
    queue_id: str
    raw: bytes  # as the queue would send it: signature(s), Received, the message

    @property
    def is_signed(self) -> bool:
        return self.raw.lower().startswith(b"dkim-signature:")


@dataclass(frozen=True, slots=True)
class SendOutcome:
    recipient: str
    is_delivered: bool
    reply: str  # the remote server's answer, or why nothing was delivered
    server: str = ""  # host[ip] that answered


def _client_message(domain: str, sender: str, recipient: str, queue_id: str) -> bytes:
    lines = [f"From: <{sender}>", f"To: <{recipient}>",
             f"Subject: postroom selftest for {domain} ({queue_id})", "MIME-Version: 1.0",
             "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 7bit", "",
             f"This message tests the mail setup of {domain}.",
             "It was built and signed by `postroom selftest`; you may delete it.", ""]
    return "\r\n".join(lines).encode("utf-8")


async def build_signed_message(config: Config, domain: str, sender: str, recipient: str,
                               now: dt.datetime) -> SignedMessage:
    """The message as our queue would send it for a user of `domain`."""
    queue_id = new_queue_id()
    zone = display_zone(config.timezone)
    client = _client_message(domain, sender, recipient, queue_id)
    # The submission listener's trace: the user's mail program, authenticated over TLS.
    trace = render_received(TraceInfo(
        client_name="localhost", client_ip="127.0.0.1", hostname=config.hostname,
        protocol="ESMTPSA", queue_id=queue_id, when=now, recipient=recipient), zone=zone)
    # RFC 6409 §8.2/§8.3: the client left Date and Message-ID out, as many do.
    completed = missing_submission_headers(
        {"from", "to", "subject", "mime-version", "content-type",
         "content-transfer-encoding"}, hostname=config.hostname, now=now, zone=zone)
    raw = trace + completed + client
    signature = await DkimSigner.from_config(config).signature_for(raw, sender)
    return SignedMessage(sender, recipient, queue_id, signature + raw)


async def send_direct(config: Config, resolver: Resolver, message: SignedMessage
                      ) -> SendOutcome:
    """Deliver `message` to its recipient's MX (or RELAY_HOST), within SEND_TIMEOUT."""
    try:
        async with asyncio.timeout(SEND_TIMEOUT):
            return await _send(config, resolver, message)
    except TimeoutError:
        return SendOutcome(message.recipient, False,
                           f"gave up after {SEND_TIMEOUT:.0f} s without an answer")


async def _send(config: Config, resolver: Resolver, message: SignedMessage) -> SendOutcome:
    domain = message.recipient.rpartition("@")[2].lower()
    try:
        route = await resolve_route(domain, resolver, port=config.outbound_smtp_port,
                                    relay=config.relay)
        session = await connect_first(route, resolver, _opener(config, route))
    except RouteError as error:
        return SendOutcome(message.recipient, False, error.attempt.diagnostic)
    server = f"{session.server_name}[{session.ip}]"
    try:
        replies = await session.send(message.sender, [message.recipient], message.raw)
    except SessionError as error:
        return SendOutcome(message.recipient, False, f"connection lost: {error}", server)
    finally:
        await session.close()
    reply = replies[0]
    return SendOutcome(message.recipient, reply.is_success, str(reply), server)


def _opener(config: Config, route: Route
            ) -> Callable[[str, str], Awaitable[OutboundSession]]:
    relay = config.relay if route.is_relay else None
    settings = ClientSettings(
        helo_name=config.hostname, port=route.port, bind_address=config.outbound_bind_address,
        username=relay.username if relay else "", password=relay.password if relay else "",
        connect_timeout=_SEND_STEP_TIMEOUT, command_timeout=_SEND_STEP_TIMEOUT,
        data_timeout=_SEND_STEP_TIMEOUT)

    async def open_session(ip: str, host: str) -> OutboundSession:
        return await OutboundSession.open(ip, host, settings)

    return open_session
