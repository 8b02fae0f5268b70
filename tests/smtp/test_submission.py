"""Ports 587 (STARTTLS) and 465 (implicit TLS): AUTH, submission, relaying."""

from __future__ import annotations

import asyncio
import base64
import smtplib
import ssl
from collections.abc import Sequence
from pathlib import Path

import pytest

from postroom.delivery.transit import OutboundRecipient, ReceivedMessage
from postroom.runtime import Runtime
from postroom.smtp.policy import SmtpMode
from tests.conftest import make_config
from tests.smtp.conftest import PASSWORD, RawClient, message, serve, stored_messages


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class RecordingQueue:
    def __init__(self) -> None:
        self.entries: list[tuple[ReceivedMessage, list[OutboundRecipient], str, int]] = []

    async def enqueue_remote(self, message: ReceivedMessage,
                             recipients: Sequence[OutboundRecipient], blob_id: str,
                             size: int) -> None:
        self.entries.append((message, list(recipients), blob_id, size))


async def test_587_without_tls_offers_no_auth(accounts: Runtime) -> None:
    async with serve(accounts, SmtpMode.SUBMISSION) as (port, _):
        client = await RawClient.connect(port)
        await client.reply()
        _, text = await client.command("EHLO client.example")
        assert "STARTTLS" in text and "AUTH" not in text
        plain = b64("\0user@example.test\0" + PASSWORD)
        assert await client.command(f"AUTH PLAIN {plain}") == (
            530, "5.7.0 Must issue a STARTTLS command first")
        code, text = await client.command("MAIL FROM:<user@example.test>")
        assert (code, text[:5]) == (530, "5.7.0")
        await client.close()


async def test_587_mail_without_auth_after_tls(accounts: Runtime,
                                              client_tls: ssl.SSLContext) -> None:
    async with serve(accounts, SmtpMode.SUBMISSION) as (port, _):
        client = await RawClient.connect(port)
        await client.reply()
        await client.command("EHLO client.example")
        await client.command("STARTTLS")
        await client.starttls(client_tls)
        _, text = await client.command("EHLO client.example")
        assert "AUTH PLAIN LOGIN" in text.split("\n") and "STARTTLS" not in text
        assert await client.command("MAIL FROM:<user@example.test>") == (
            530, "5.7.0 Authentication required")
        await client.close()


async def auth_dialog(client: RawClient, mechanism: str, password: str) -> tuple[int, str]:
    if mechanism == "PLAIN":
        return await client.command("AUTH PLAIN " + b64("\0user@example.test\0" + password))
    if mechanism == "PLAIN-CHALLENGE":
        assert await client.command("AUTH PLAIN") == (334, "")
        return await client.command(b64("\0user@example.test\0" + password))
    assert await client.command("AUTH LOGIN") == (334, b64("Username:"))
    assert await client.command(b64("user@example.test")) == (334, b64("Password:"))
    return await client.command(b64(password))


@pytest.mark.parametrize("implicit", [False, True], ids=["587-starttls", "465-implicit"])
@pytest.mark.parametrize("mechanism", ["PLAIN", "PLAIN-CHALLENGE", "LOGIN"])
async def test_auth_good_and_bad(accounts: Runtime, client_tls: ssl.SSLContext,
                                 implicit: bool, mechanism: str) -> None:
    mode = SmtpMode.SUBMISSIONS if implicit else SmtpMode.SUBMISSION
    async with serve(accounts, mode, implicit_tls=implicit) as (port, _):
        client = await RawClient.connect(port, client_tls if implicit else None)
        await client.reply()
        await client.command("EHLO client.example")
        if not implicit:
            await client.command("STARTTLS")
            await client.starttls(client_tls)
            await client.command("EHLO client.example")
        assert await auth_dialog(client, mechanism, "wrong") == (
            535, "5.7.8 Authentication credentials invalid")
        assert await auth_dialog(client, mechanism, PASSWORD) == (
            235, "2.7.0 Authentication successful")
        assert (await client.command("AUTH PLAIN =="))[0] == 503  # only once
        assert (await client.command("MAIL FROM:<user@example.test>"))[0] == 250
        await client.close()


async def test_auth_cancel_and_bad_base64(accounts: Runtime, client_tls: ssl.SSLContext) -> None:
    async with serve(accounts, SmtpMode.SUBMISSIONS, implicit_tls=True) as (port, _):
        client = await RawClient.connect(port, client_tls)
        await client.reply()
        await client.command("EHLO client.example")
        assert (await client.command("AUTH LOGIN"))[0] == 334
        assert (await client.command("*"))[0] == 501
        assert (await client.command("AUTH PLAIN !!!notbase64"))[0] == 501
        assert (await client.command("AUTH CRAM-MD5"))[0] == 504
        assert await client.command("NOOP") == (250, "2.0.0 Ok")
        await client.close()


def submit(port: int, tls: ssl.SSLContext, recipients: list[str], data: bytes,
           implicit: bool) -> dict:
    if implicit:
        smtp: smtplib.SMTP = smtplib.SMTP_SSL("127.0.0.1", port, context=tls, timeout=10)
    else:
        smtp = smtplib.SMTP("127.0.0.1", port, timeout=10)
    with smtp:
        smtp.ehlo("laptop.example")
        if not implicit:
            smtp.starttls(context=tls)
        smtp.login("user@example.test", PASSWORD)
        return smtp.sendmail("user@example.test", recipients, data)


@pytest.mark.parametrize("implicit", [False, True], ids=["587", "465"])
async def test_authenticated_submission_delivered_locally(
        accounts: Runtime, client_tls: ssl.SSLContext, implicit: bool) -> None:
    mode = SmtpMode.SUBMISSIONS if implicit else SmtpMode.SUBMISSION
    async with serve(accounts, mode, implicit_tls=implicit) as (port, _):
        await asyncio.to_thread(submit, port, client_tls, ["other@example.test"],
                                message("submitted"), implicit)
    (stored,) = await stored_messages(accounts, "other@example.test")
    assert stored.startswith(b"Return-Path: <user@example.test>\r\n")
    assert b"with ESMTPSA id" in stored.replace(b"\r\n\t", b" ")


async def test_remote_recipient_without_queue_is_refused(accounts: Runtime,
                                                       client_tls: ssl.SSLContext) -> None:
    async with serve(accounts, SmtpMode.SUBMISSIONS, implicit_tls=True) as (port, _):
        with pytest.raises(smtplib.SMTPRecipientsRefused) as raised:
            await asyncio.to_thread(submit, port, client_tls, ["x@remote.example"],
                                    message(), True)
    code, text = raised.value.recipients["x@remote.example"]
    assert code == 550 and text.startswith(b"5.7.1")


async def test_remote_recipients_go_to_the_outbound_queue(accounts: Runtime,
                                                          client_tls: ssl.SSLContext) -> None:
    queue = RecordingQueue()
    async with serve(accounts, SmtpMode.SUBMISSIONS, implicit_tls=True,
                     outbound=queue) as (port, _):
        await asyncio.to_thread(submit, port, client_tls,
                                ["x@remote.example", "user@example.test", "fwd@example.test"],
                                message("out"), True)
    ((received, recipients, blob_id, size),) = queue.entries
    assert [r.address for r in recipients] == ["x@remote.example", "someone@remote.example"]
    assert received.sender == "user@example.test" and received.client.auth_user
    blob = await accounts.blobs.read(blob_id)
    assert len(blob) == size and b"Subject: out" in blob
    (stored,) = await stored_messages(accounts, "user@example.test")
    assert stored == blob


async def test_trusted_network_may_relay_on_25(tmp_path: Path, server_cert: tuple[Path, Path],
                                               accounts: Runtime) -> None:
    accounts.config = make_config(tmp_path, server_cert, TRUSTED_NETWORKS="127.0.0.0/8")
    queue = RecordingQueue()
    async with serve(accounts, SmtpMode.MX, outbound=queue) as (port, _):
        client = await RawClient.connect(port)
        await client.reply()
        await client.command("EHLO client.example")
        await client.command("MAIL FROM:<app@internal.example>")
        code, _ = await client.command("RCPT TO:<x@remote.example> NOTIFY=FAILURE,DELAY")
        assert code == 250
        await client.command("DATA")
        await client.send(message() + b".\r\n")
        assert (await client.reply())[0] == 250
        await client.close()
    ((_, recipients, _, _),) = queue.entries
    assert recipients == [OutboundRecipient("x@remote.example", ("FAILURE", "DELAY"))]
