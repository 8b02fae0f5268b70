"""Port 25 (MX) over real sockets: delivery, aliases, catch-all, refusals, STARTTLS,
pipelining, size limits, smuggling, loops, garbage and shutdown."""

from __future__ import annotations

import asyncio
import re
import shutil
import smtplib
import ssl
import subprocess

import pytest

from postroom.runtime import Runtime
from tests.conftest import TEST_HOSTNAME
from tests.smtp.conftest import SIZE_LIMIT, RawClient, message, serve, stored_messages

SENDER = "sender@remote.example"


def send_with_smtplib(port: int, recipients: list[str], data: bytes,
                      tls: ssl.SSLContext | None = None, sender: str = SENDER) -> dict:
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.example", timeout=10) as smtp:
        if tls is not None:
            smtp.starttls(context=tls)
        return smtp.sendmail(sender, recipients, data)


async def test_delivery_to_account_is_byte_exact_with_trace_headers(accounts: Runtime) -> None:
    body = b"Line one\r\n.leading dot\r\n..two dots\r\n\r\n\xc3\xa6 8bit\r\n"
    data = message(body=body)
    async with serve(accounts) as (port, _):
        refused = await asyncio.to_thread(send_with_smtplib, port, ["User@Example.TEST"], data)
    assert refused == {}
    (stored,) = await stored_messages(accounts, "user@example.test")
    assert stored.startswith(b"Return-Path: <sender@remote.example>\r\nReceived: from "
                             b"client.example ([127.0.0.1])")
    assert stored.endswith(b"\r\n" + data)
    headers = stored[: len(stored) - len(data)].decode()
    unfolded = headers.replace("\r\n\t", " ")
    assert f"by {TEST_HOSTNAME} (postroom) with ESMTP id" in unfolded
    assert "for <User@Example.TEST>;" in unfolded
    assert all(len(line) < 78 for line in headers.split("\r\n"))
    assert re.search(r"\n\t.*\+0000\r\n$", headers)


async def test_alias_with_two_targets_and_catch_all(accounts: Runtime) -> None:
    async with serve(accounts) as (port, _):
        await asyncio.to_thread(send_with_smtplib, port, ["team@example.test"],
                                message("team"))
        await asyncio.to_thread(send_with_smtplib, port,
                                ["anything@catchall.test", "boss@catchall.test"],
                                message("catch"))
    for address in ("user@example.test", "other@example.test"):
        (stored,) = await stored_messages(accounts, address)
        assert b"Subject: team" in stored
        assert b"for <team@example.test>" in stored.replace(b"\r\n\t", b" ")
    # two RCPTs reaching one account: one copy, and no "for" clause (two recipients)
    (stored,) = await stored_messages(accounts, "boss@catchall.test")
    assert b"Subject: catch" in stored and b" for <" not in stored


async def test_one_blob_shared_by_all_recipients(accounts: Runtime) -> None:
    async with serve(accounts) as (port, _):
        await asyncio.to_thread(send_with_smtplib, port,
                                ["user@example.test", "other@example.test"], message())
    rows = []
    for address in ("user@example.test", "other@example.test"):
        account = await accounts.store.get_account(address)
        assert account is not None
        box = await accounts.store.get_mailbox(account.id, "INBOX")
        assert box is not None
        rows += await accounts.store.list_messages(box.id)
        assert await accounts.store.get_meta(box.id, rows[-1].uid)  # meta was stored
    assert len({row.blob_id for row in rows}) == 1
    assert rows[0].size == len(await accounts.blobs.read(rows[0].blob_id))


async def test_unknown_user_and_relay_denied(accounts: Runtime) -> None:
    async with serve(accounts) as (port, _):
        client = await RawClient.connect(port)
        assert (await client.reply())[0] == 220
        assert (await client.command("EHLO client.example"))[0] == 250
        assert await client.command("MAIL FROM:<a@remote.example>") == (250, "2.1.0 Sender OK")
        code, text = await client.command("RCPT TO:<nobody@example.test>")
        assert (code, text[:5]) == (550, "5.1.1")
        code, text = await client.command("RCPT TO:<x@elsewhere.example>")
        assert (code, text) == (554, "5.7.1 <x@elsewhere.example>: Relay access denied")
        for trick in ("<x%elsewhere.example@example.test>", "<@example.test:x@elsewhere.example>",
                      "<x@[127.0.0.1]>", '<"x@elsewhere.example"@example.test>',
                      "<fwd@example.test>"):
            code, _ = await client.command(f"RCPT TO:{trick}")
            assert code in (550, 554), trick
        assert await client.command("DATA") == (554, "5.5.1 No valid recipients")
        assert await client.command("QUIT") == (221, "2.0.0 Bye")
        await client.close()


async def test_postmaster_without_domain(accounts: Runtime, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    await accounts.accounts.add_alias(f"postmaster@{TEST_HOSTNAME}", "user@example.test")
    async with serve(accounts) as (port, _):
        await asyncio.to_thread(send_with_smtplib, port, ["<Postmaster>"], message("pm"))
    (stored,) = await stored_messages(accounts, "user@example.test")
    assert b"Subject: pm" in stored


async def test_starttls_then_delivery(accounts: Runtime, client_tls: ssl.SSLContext) -> None:
    async with serve(accounts) as (port, _):
        await asyncio.to_thread(send_with_smtplib, port, ["user@example.test"], message(),
                                client_tls)
    (stored,) = await stored_messages(accounts, "user@example.test")
    head = stored.split(b"\r\n\r\n")[0].decode().replace("\r\n\t", " ")
    assert "with ESMTPS id" in head and "(using TLSv1." in head


async def test_ehlo_on_port_25(accounts: Runtime, client_tls: ssl.SSLContext) -> None:
    async with serve(accounts) as (port, _):
        client = await RawClient.connect(port)
        await client.reply()
        _code, text = await client.command("EHLO client.example")
        keywords = text.split("\n")[1:]
        assert keywords == ["PIPELINING", f"SIZE {SIZE_LIMIT}", "STARTTLS", "ENHANCEDSTATUSCODES",
                            "8BITMIME", "DSN", "SMTPUTF8", "CHUNKING", "BINARYMIME"]
        assert (await client.command("AUTH PLAIN AGEAYg=="))[0] == 503  # no AUTH on 25
        assert (await client.command("STARTTLS"))[0] == 220
        await client.starttls(client_tls)
        _, text = await client.command("EHLO client.example")
        assert "STARTTLS" not in text and "AUTH" not in text
        assert (await client.command("STARTTLS"))[:1] == (503,)
        await client.close()


async def test_pipelined_commands_answered_in_order(accounts: Runtime) -> None:
    async with serve(accounts) as (port, _):
        client = await RawClient.connect(port)
        await client.reply()
        await client.send(b"EHLO client.example\r\nMAIL FROM:<a@remote.example>\r\n"
                          b"RCPT TO:<nobody@example.test>\r\nRCPT TO:<user@example.test>\r\n"
                          b"RCPT TO:<other@example.test>\r\nDATA\r\n")
        codes = [(await client.reply())[0] for _ in range(6)]
        assert codes == [250, 250, 550, 250, 250, 354]
        await client.send(message() + b".\r\nNOOP\r\nQUIT\r\n")
        code, text = await client.reply()
        assert code == 250 and text.startswith("2.0.0 Ok: queued as ")
        assert await client.reply() == (250, "2.0.0 Ok")
        assert await client.reply() == (221, "2.0.0 Bye")
        await client.close()
    assert len(await stored_messages(accounts, "other@example.test")) == 1


async def test_size_limit_by_parameter_and_by_data(accounts: Runtime) -> None:
    async with serve(accounts) as (port, _):
        client = await RawClient.connect(port)
        await client.reply()
        await client.command("EHLO client.example")
        code, text = await client.command(f"MAIL FROM:<a@remote.example> SIZE={SIZE_LIMIT + 1}")
        assert (code, text[:5]) == (552, "5.3.4")
        assert (await client.command("MAIL FROM:<a@remote.example> SIZE=100"))[0] == 250
        assert (await client.command("RCPT TO:<user@example.test>"))[0] == 250
        assert (await client.command("DATA"))[0] == 354
        line = b"x" * 998 + b"\r\n"
        await client.send(message(body=line * (SIZE_LIMIT // 1000 + 5)) + b".\r\n")
        code, text = await client.reply()
        assert (code, text[:5]) == (552, "5.3.4")
        assert await client.command("NOOP") == (250, "2.0.0 Ok")  # session goes on
        await client.close()
    assert await stored_messages(accounts, "user@example.test") == []
    assert list((accounts.config.data_dir / "spool").iterdir()) == []


@pytest.mark.parametrize("smuggled", [b"\n.\n", b"\r\n.\n", b"\n.\r\n", b"\r.\r"])
async def test_smuggling_never_starts_a_second_message(accounts: Runtime, smuggled: bytes
                                                       ) -> None:
    """SMTPD_FORBID_BARE_NEWLINE=normalize (the default): a lone LF reads as CRLF, but only
    <CRLF>.<CRLF> ends the data, so the smuggled commands are text of the one message; a
    bare CR still taints it (521 and close). `reject`: tests/hardening/test_protocol_attacks."""
    async with serve(accounts) as (port, _):
        client = await RawClient.connect(port)
        await client.reply()
        await client.command("EHLO client.example")
        await client.command("MAIL FROM:<a@remote.example>")
        await client.command("RCPT TO:<user@example.test>")
        assert (await client.command("DATA"))[0] == 354
        await client.send(b"Subject: first\r\n\r\nbody" + smuggled
                          + b"MAIL FROM:<evil@remote.example>\r\nRCPT TO:<other@example.test>\r\n"
                          b"DATA\r\nSubject: smuggled\r\n\r\nevil\r\n.\r\n")
        code, text = await client.reply()
        if b"\r" in smuggled.replace(b"\r\n", b""):
            assert (code, text[:5]) == (521, "5.5.2")
            assert await client.is_closed()
        else:
            assert code == 250, text
        await client.close()
    delivered = await stored_messages(accounts, "user@example.test")
    if code == 250:
        (stored,) = delivered
        assert b"\r\nMAIL FROM:<evil@remote.example>\r\n" in stored
        assert b"\n" not in stored.replace(b"\r\n", b"")
    else:
        assert delivered == []
    assert await stored_messages(accounts, "other@example.test") == []


async def test_mail_loop_refused(accounts: Runtime) -> None:
    hops = b"".join(b"Received: from hop%d.example by x.example; Sat, 1 Jan 2022 00:00:00 +0000"
                    b"\r\n" % n for n in range(51))
    async with serve(accounts) as (port, _):
        with pytest.raises(smtplib.SMTPDataError) as raised:
            await asyncio.to_thread(send_with_smtplib, port, ["user@example.test"],
                                    hops + message())
    assert raised.value.smtp_code == 554 and raised.value.smtp_error.startswith(b"5.4.6")
    assert await stored_messages(accounts, "user@example.test") == []


async def test_garbage_and_errors_do_not_kill_the_server(accounts: Runtime) -> None:
    async with serve(accounts) as (port, _):
        client = await RawClient.connect(port)
        await client.reply()
        await client.send(b"\x00\xff\xfe garbage\r\n")
        assert (await client.reply())[0] == 501
        await client.send(b"x" * 20000 + b"\r\n")
        assert await client.reply() == (500, "5.5.2 Line too long")
        assert (await client.command("GET / HTTP/1.1"))[0] == 500
        assert (await client.command("MAIL FROM:<a@remote.example>"))[0] == 503  # no EHLO
        assert (await client.command("RCPT TO:<user@example.test>"))[0] == 503
        assert await client.command("NOOP") == (250, "2.0.0 Ok")
        for _ in range(30):
            await client.send(b"BOGUS\r\n")
        codes = []
        while True:
            try:
                codes.append((await client.reply())[0])
            except ConnectionError:
                break
        assert codes[-1] == 421 and len(codes) < 30  # too many errors: disconnected
        await client.close()
        again = await RawClient.connect(port)
        assert (await again.reply())[0] == 220
        await again.close()


async def test_unexpected_exception_is_451_and_connection_survives(
        accounts: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    async with serve(accounts) as (port, server):
        async def broken(message: object) -> object:
            raise RuntimeError("disk on fire")
        monkeypatch.setattr(server.receiver, "accept", broken)
        client = await RawClient.connect(port)
        await client.reply()
        await client.command("EHLO client.example")
        await client.command("MAIL FROM:<a@remote.example>")
        await client.command("RCPT TO:<user@example.test>")
        await client.command("DATA")
        await client.send(message() + b".\r\n")
        code, text = await client.reply()
        assert (code, text) == (451, "4.3.0 Local error in processing, try again later")
        assert await client.command("NOOP") == (250, "2.0.0 Ok")
        assert (await client.command("RCPT TO:<user@example.test>"))[0] == 503  # reset
        await client.close()


async def test_shutdown_refuses_new_and_idle_but_finishes_transaction(accounts: Runtime
                                                                      ) -> None:
    async with serve(accounts) as (port, _):
        idle = await RawClient.connect(port)
        busy = await RawClient.connect(port)
        for client in (idle, busy):
            await client.reply()
            await client.command("EHLO client.example")
        assert (await busy.command("MAIL FROM:<a@remote.example>"))[0] == 250
        accounts.shutting_down.set()
        assert await idle.reply() == (421, "4.3.2 Service shutting down, closing connection")
        assert await idle.is_closed()
        assert (await busy.command("RCPT TO:<user@example.test>"))[0] == 250
        assert (await busy.command("DATA"))[0] == 354
        await busy.send(message() + b".\r\n")
        assert (await busy.reply())[0] == 250
        assert (await busy.command("MAIL FROM:<a@remote.example>"))[0] == 421
        assert await busy.is_closed()
        late = await RawClient.connect(port)
        assert (await late.reply())[0] == 421
        for client in (idle, busy, late):
            await client.close()
    assert len(await stored_messages(accounts, "user@example.test")) == 1


async def test_idle_timeout(accounts: Runtime) -> None:
    async with serve(accounts, command_timeout=0.2) as (port, _):
        client = await RawClient.connect(port)
        await client.reply()
        assert (await client.reply())[0] == 421  # waits for the server's timeout
        assert await client.is_closed()
        await client.close()


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks not installed")
async def test_swaks_with_starttls(accounts: Runtime) -> None:
    async with serve(accounts) as (port, _):
        result = await asyncio.to_thread(
            subprocess.run,
            ["swaks", "--server", "127.0.0.1", "--port", str(port), "--tls",
             "--from", SENDER, "--to", "user@example.test", "--helo", "swaks.example",
             "--header", "Subject: via swaks"],
            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    (stored,) = await stored_messages(accounts, "user@example.test")
    assert b"Subject: via swaks" in stored
    assert b"with ESMTPS" in stored.replace(b"\r\n\t", b" ")


async def test_spool_failure_mid_data_answers_once(accounts: Runtime,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    async def full_disk(self: object, data: bytes) -> None:
        raise OSError(28, "No space left on device")
    monkeypatch.setattr("postroom.smtp.receive.Spool.write", full_disk)
    async with serve(accounts) as (port, _):
        client = await RawClient.connect(port)
        await client.reply()
        await client.command("EHLO client.example")
        await client.command("MAIL FROM:<a@remote.example>")
        await client.command("RCPT TO:<user@example.test>")
        await client.command("DATA")
        await client.send(message() + b"more\r\n" * 1000 + b".\r\nNOOP\r\n")
        assert (await client.reply())[0] == 451
        assert await client.reply() == (250, "2.0.0 Ok")  # replies stay in step
        await client.close()
    assert list((accounts.config.data_dir / "spool").iterdir()) == []


async def test_smtputf8(accounts: Runtime) -> None:
    async with serve(accounts) as (port, _):
        client = await RawClient.connect(port)
        await client.reply()
        await client.command("EHLO client.example")
        assert (await client.command("MAIL FROM:<jøran@bø.example>"))[0] == 553
        assert (await client.command("MAIL FROM:<jøran@bø.example> SMTPUTF8"))[0] == 250
        assert (await client.command("RCPT TO:<user@example.test>"))[0] == 250
        await client.command("DATA")
        await client.send("Subject: blåbær\r\n\r\nhei\r\n.\r\n".encode())
        assert (await client.reply())[0] == 250
        await client.close()
    (stored,) = await stored_messages(accounts, "user@example.test")
    assert stored.startswith("Return-Path: <jøran@bø.example>\r\n".encode())


async def test_small_bodies_stay_in_memory_large_ones_go_through_a_spool_file(
        accounts: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 8: a body under Spool._FLUSH_AT is never written to the spool (no file
    create and delete per message); a larger one is, and both arrive byte-exact."""
    from postroom.smtp.receive import Spool

    monkeypatch.setattr(Spool, "_FLUSH_AT", 8192)
    drains: list[int] = []
    real_drain = Spool._drain

    def counted_drain(self: Spool) -> None:
        drains.append(len(self._pending))
        real_drain(self)
    monkeypatch.setattr(Spool, "_drain", counted_drain)
    small = message("small", b"tiny\r\n")
    large = message("large", b"".join(b"line %05d of a long body\r\n" % n for n in range(2000)))
    async with serve(accounts) as (port, _):
        await asyncio.to_thread(send_with_smtplib, port, ["user@example.test"], small)
        assert drains == []
        await asyncio.to_thread(send_with_smtplib, port, ["user@example.test"], large)
        assert drains
    stored = await stored_messages(accounts, "user@example.test")
    assert [body.endswith(sent) for body, sent in zip(stored, (small, large), strict=True)] \
        == [True, True]
    assert list((accounts.config.data_dir / "spool").iterdir()) == []
