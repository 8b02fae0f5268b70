"""outbound/client.py against the fake MX: TLS, AUTH rules, per-recipient replies, SMTPUTF8."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from postroom.outbound.client import ClientSettings, OutboundSession, SessionError
from tests.queue.fakemx import FakeMx

MESSAGE = b"From: a@example.test\r\nSubject: t\r\n\r\n.leading dot\r\nbody\r\n"


def server_tls(server_cert: tuple[Path, Path] | None) -> ssl.SSLContext:
    """None: a context without any certificate, so every handshake fails."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    if server_cert is not None:
        context.load_cert_chain(*server_cert)
    return context


def settings(port: int, **extra: object) -> ClientSettings:
    return ClientSettings(helo_name="mail.example.test", port=port, command_timeout=10,
                          **extra)  # type: ignore[arg-type]


async def test_per_recipient_replies_and_opportunistic_tls(
        server_cert: tuple[Path, Path]) -> None:
    async with FakeMx(tls_context=server_tls(server_cert)) as mx:
        mx.rcpt_replies["no@remote.test"] = "550 5.1.1 unknown"
        session = await OutboundSession.open(
            "127.0.0.1", "mx.remote.test", settings(mx.port, bind_address="127.0.0.1"))
        try:
            assert session.is_tls  # self-signed for another name: accepted anyway
            replies = await session.send("a@example.test",
                                         ["yes@remote.test", "no@remote.test"], MESSAGE)
            assert [r.code for r in replies] == [250, 550]
            assert str(replies[1]) == "550 5.1.1 unknown"
            only_bad = await session.send("a@example.test", ["no@remote.test"], MESSAGE)
            assert [r.code for r in only_bad] == [550]  # RSET, session still usable
            again = await session.send("", ["yes@remote.test"], MESSAGE)
            assert again[0].is_success
        finally:
            await session.close()
    assert [t.recipients for t in mx.transactions] == [["yes@remote.test"],
                                                       ["yes@remote.test"]]
    assert mx.transactions[0].content == MESSAGE  # dot-stuffing undone by the server
    assert mx.transactions[0].is_tls


async def test_failed_tls_handshake_falls_back_to_plaintext() -> None:
    async with FakeMx(tls_context=server_tls(None)) as mx:
        session = await OutboundSession.open("127.0.0.1", "mx.remote.test",
                                             settings(mx.port))
        try:
            assert not session.is_tls
            assert (await session.send("a@example.test", ["b@remote.test"], MESSAGE)
                    )[0].is_success
        finally:
            await session.close()
    assert mx.connections == 2 and not mx.transactions[0].is_tls


async def test_credentials_are_not_sent_without_tls() -> None:
    async with FakeMx() as mx:
        with pytest.raises(SessionError) as caught:
            await OutboundSession.open("127.0.0.1", "relay.test",
                                       settings(mx.port, username="u", password="p"))
    assert caught.value.reply is not None and caught.value.reply.code == 454
    assert not caught.value.is_service_refusal


async def test_greeting_refusal_is_a_service_refusal() -> None:
    async with FakeMx(refuse_connections=1) as mx:
        with pytest.raises(SessionError) as caught:
            await OutboundSession.open("127.0.0.1", "mx.test", settings(mx.port))
    assert caught.value.is_service_refusal
    assert caught.value.reply is not None and caught.value.reply.code == 421


async def test_connection_refused() -> None:
    async with FakeMx() as mx:
        port = mx.port
    with pytest.raises(SessionError, match="cannot connect"):
        await OutboundSession.open("127.0.0.1", "mx.test", settings(port))


@pytest.mark.parametrize("supported", [True, False])
async def test_smtputf8_addresses(supported: bool) -> None:
    async with FakeMx(smtputf8=supported) as mx:
        session = await OutboundSession.open("127.0.0.1", "mx.test", settings(mx.port))
        try:
            (reply,) = await session.send("a@example.test", ["bøb@remote.test"], MESSAGE)
        finally:
            await session.close()
    if supported:
        assert reply.is_success and mx.transactions[0].recipients == ["bøb@remote.test"]
    else:
        assert (reply.code, reply.is_local) == (553, True) and "5.6.7" in reply.text


async def test_unsendable_address_is_refused_locally() -> None:
    async with FakeMx() as mx:
        session = await OutboundSession.open("127.0.0.1", "mx.test", settings(mx.port))
        try:
            (reply,) = await session.send("a@example.test", ["x>\r\nRSET@r.test"], MESSAGE)
        finally:
            await session.close()
    assert reply.is_local and reply.code == 553 and mx.transactions == []
