"""The inbound check stages through a real SMTP session (smtp/session.py, receive.py):
where each stage runs, and how its merged verdict is applied."""

from __future__ import annotations

from dataclasses import dataclass, field

from postroom.checks import ACCEPT, CheckReply, Verdict, quarantine, refuse
from postroom.delivery.transit import ClientInfo, Envelope, ReceivedMessage
from postroom.runtime import Runtime
from tests.smtp.conftest import RawClient, message, serve, stored_messages


@dataclass
class Scripted:
    """Refuses what it is told to, at each stage; notes what it saw."""

    refuse_connect: bool = False
    refuse_sender: str = ""
    refuse_rcpt: str = ""
    seen: list[str] = field(default_factory=list)
    name: str = "scripted"
    timeout: float | None = None
    fail_open: bool = False

    async def on_connect(self, client: ClientInfo) -> Verdict:
        self.seen.append(f"connect {client.ip}")
        if self.refuse_connect:
            return refuse(CheckReply(554, "5.7.1", "Go away"))
        return ACCEPT

    async def on_mail(self, client: ClientInfo, sender: str) -> Verdict:
        self.seen.append(f"mail {client.helo_name} {sender}")
        if sender == self.refuse_sender:
            return refuse(CheckReply(553, "5.7.1", f"<{sender}>: not welcome"))
        return ACCEPT

    async def on_rcpt(self, envelope: Envelope, address: str) -> Verdict:
        self.seen.append(f"rcpt {envelope.queue_id} {address}")
        if address == self.refuse_rcpt:
            return refuse(CheckReply(451, "4.7.1", f"<{address}>: later"))
        return ACCEPT

    async def on_message(self, message: ReceivedMessage) -> Verdict:
        self.seen.append(f"message {message.queue_id} {message.client.helo_name}")
        return quarantine("Junk", "scripted", (b"X-Scripted: yes\r\n",))


async def test_connect_refusal_is_the_only_line(accounts: Runtime) -> None:
    check = Scripted(refuse_connect=True)
    async with serve(accounts, checks=[check]) as (port, _):
        client = await RawClient.connect(port)
        assert await client.reply() == (554, "5.7.1 Go away")
        assert await client.is_closed()
        await client.close()
    assert check.seen == ["connect 127.0.0.1"]


async def test_mail_and_rcpt_refusals_and_the_message_verdict_applied(
        accounts: Runtime) -> None:
    check = Scripted(refuse_sender="bad@remote.example", refuse_rcpt="other@example.test")
    async with serve(accounts, checks=[check]) as (port, _):
        client = await RawClient.connect(port)
        assert (await client.reply())[0] == 220
        await client.command("EHLO client.example")
        assert await client.command("MAIL FROM:<bad@remote.example>") == (
            553, "5.7.1 <bad@remote.example>: not welcome")
        assert (await client.command("MAIL FROM:<good@remote.example>"))[0] == 250
        assert (await client.command("RCPT TO:<nobody@example.test>"))[0] == 550  # not asked
        assert await client.command("RCPT TO:<other@example.test>") == (
            451, "4.7.1 <other@example.test>: later")
        assert (await client.command("RCPT TO:<user@example.test>"))[0] == 250
        assert (await client.command("DATA"))[0] == 354
        await client.send(message() + b".\r\n")
        assert (await client.reply())[0] == 250
        await client.close()
    queue_ids = {line.split()[1] for line in check.seen if line.startswith("rcpt")}
    assert len(queue_ids) == 1
    assert [line.split()[0] for line in check.seen] == [
        "connect", "mail", "mail", "rcpt", "rcpt", "message"]
    assert check.seen[-1] == f"message {queue_ids.pop()} client.example"
    assert await stored_messages(accounts, "user@example.test") == []
    (stored,) = await stored_messages(accounts, "user@example.test", "Junk")
    assert b"\r\nX-Scripted: yes\r\nReceived: " in stored  # above our Received field
