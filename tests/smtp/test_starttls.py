"""STARTTLS command injection (RFC 3207 §4.2, CVE-2011-0411 class): plaintext pipelined
after STARTTLS must never be executed inside the TLS session."""

from __future__ import annotations

import ssl

import pytest

from postroom.runtime import Runtime
from postroom.smtp import session
from postroom.smtp.policy import SmtpMode
from tests.smtp.conftest import RawClient, serve, stored_messages


@pytest.mark.parametrize("separate_writes", [False, True])
@pytest.mark.parametrize("read_size", [65536, 10], ids=["parser-buffer", "reader-buffer"])
async def test_plaintext_pipelined_after_starttls_is_discarded(
        accounts: Runtime, client_tls: ssl.SSLContext, separate_writes: bool, read_size: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # With 10-byte reads the server takes exactly "STARTTLS\r\n" and the injected bytes
    # wait in the StreamReader's own buffer, not in the parser's.
    monkeypatch.setattr(session, "READ_SIZE", read_size)
    async with serve(accounts, SmtpMode.MX) as (port, _):
        client = await RawClient.connect(port)
        await client.reply()
        await client.command("EHLO client.example")
        injected = (b"MAIL FROM:<evil@remote.example>\r\nRCPT TO:<user@example.test>\r\n"
                    b"DATA\r\nSubject: injected\r\n\r\nx\r\n.\r\n")
        if separate_writes:
            await client.send(b"STARTTLS\r\n")
            await client.send(injected)
        else:
            await client.send(b"STARTTLS\r\n" + injected)
        assert await client.reply() == (220, "2.0.0 Ready to start TLS")
        await client.starttls(client_tls)
        # State was reset and nothing injected ran: no EHLO, no transaction.
        assert (await client.command("MAIL FROM:<a@remote.example>"))[0] == 503
        assert (await client.command("EHLO client.example"))[0] == 250
        assert (await client.command("RCPT TO:<user@example.test>"))[0] == 503
        await client.close()
    assert await stored_messages(accounts, "user@example.test") == []


async def test_failed_handshake_closes_only_that_connection(accounts: Runtime) -> None:
    async with serve(accounts, SmtpMode.MX) as (port, _):
        client = await RawClient.connect(port)
        await client.reply()
        await client.command("STARTTLS")
        await client.send(b"this is not a ClientHello\r\n" * 10)
        assert await client.is_closed()
        await client.close()
        again = await RawClient.connect(port)
        assert (await again.reply())[0] == 220
        await again.close()
