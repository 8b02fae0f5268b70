"""POP3 over real sockets on 127.0.0.1: poplib (in a thread, the server on the test's
loop) for the ordinary dialogue, RawClient for pipelining, STLS injection and garbage."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import poplib
import ssl
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

import pytest

from postroom.accounts.service import AccountService
from postroom.pop3.commands import RETR_WHOLE
from postroom.runtime import Runtime
from postroom.store import open_store
from postroom.store.changes import ChangeFeed
from tests.pop3.harness import Pop3Harness, RawClient, add_account, deliver

T = TypeVar("T")

ALICE, ALICE_PW = "alice@example.test", "alice pw with spaces"
BOB, BOB_PW = "bob@example.test", "bob-secret"

MESSAGES = [
    b"From: a@example.test\r\nSubject: one\r\n\r\nfirst body\r\n",
    b"From: b@example.test\r\nSubject: dots\r\n\r\n.leading dot\r\n..two dots\r\n.\r\n"
    b"middle\r\n",
    b"From: c@example.test\r\nSubject: three\r\n\r\nl1\r\nl2\r\nl3\r\nl4\r\n",
]


@pytest.fixture
async def pop3(runtime: Runtime) -> AsyncIterator[Pop3Harness]:
    harness = await Pop3Harness(runtime).start()
    await add_account(runtime, ALICE, ALICE_PW)
    await add_account(runtime, BOB, BOB_PW)
    for raw in MESSAGES:
        await deliver(runtime, ALICE, raw)
    try:
        yield harness
    finally:
        await harness.stop()


async def in_thread(function: Callable[[], T]) -> T:
    return await asyncio.wait_for(asyncio.to_thread(function), 30)


def plain(harness: Pop3Harness) -> poplib.POP3:
    return poplib.POP3("127.0.0.1", harness.plain_port, timeout=10)


def via_stls(harness: Pop3Harness, context: ssl.SSLContext) -> poplib.POP3:
    client = plain(harness)
    client.stls(context)
    return client


def implicit(harness: Pop3Harness, context: ssl.SSLContext) -> poplib.POP3_SSL:
    return poplib.POP3_SSL("127.0.0.1", harness.tls_port, timeout=10, context=context)


def login(client: poplib.POP3, user: str = ALICE, password: str = ALICE_PW) -> bytes:
    client.user(user)
    return client.pass_(password)


def raw_command(client: poplib.POP3, line: str) -> bytes:
    """A command poplib has no method for; -ERR raises poplib.error_proto."""
    return client._shortcmd(line)  # type: ignore[attr-defined, no-any-return]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def plain_ir(authzid: str, user: str, password: str) -> str:
    """An RFC 4616 PLAIN response, base64."""
    return b64("\0".join((authzid, user, password)).encode())


async def inbox_uidvalidity(runtime: Runtime, address: str) -> tuple[int, list[int]]:
    account = await runtime.store.get_account(address)
    assert account is not None
    inbox = await runtime.store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    rows = await runtime.store.list_messages(inbox.id)
    return inbox.uidvalidity, [row.uid for row in rows]


# -- capabilities and TLS ------------------------------------------------------------------


async def test_capa_before_and_after_stls(pop3: Pop3Harness,
                                          client_tls: ssl.SSLContext) -> None:
    def run() -> tuple[dict[str, list[str]], dict[str, list[str]], bytes]:
        client = plain(pop3)
        before = client.capa()
        client.stls(client_tls)
        after = client.capa()
        return before, after, client.quit()

    before, after, goodbye = await in_thread(run)
    for name in ("TOP", "UIDL", "RESP-CODES", "PIPELINING", "STLS"):
        assert name in before
    assert before["IMPLEMENTATION"] == ["postroom"]
    assert "USER" not in before and "SASL" not in before
    assert "STLS" not in after
    assert "USER" in after and after["SASL"] == ["PLAIN", "LOGIN"]
    assert goodbye.startswith(b"+OK")


async def test_credentials_refused_before_stls(pop3: Pop3Harness) -> None:
    client = await RawClient.connect(pop3.plain_port)
    for command in (f"USER {ALICE}", f"PASS {ALICE_PW}",
                    f"AUTH PLAIN {plain_ir('', ALICE, ALICE_PW)}", "AUTH"):
        reply = await client.command(command)
        assert reply.startswith(b"-ERR [AUTH] "), (command, reply)
        assert b"STLS" in reply
    assert await client.command("STAT") == b"-ERR STAT is not valid in this state\r\n"
    assert await client.command("QUIT") == b"+OK postroom POP3 server signing off\r\n"
    assert await client.is_closed_by_server()


async def test_login_via_stls(pop3: Pop3Harness, client_tls: ssl.SSLContext) -> None:
    def run() -> tuple[bytes, tuple[int, int]]:
        client = via_stls(pop3, client_tls)
        welcome = login(client)
        stat = client.stat()
        client.quit()
        return welcome, stat

    welcome, stat = await in_thread(run)
    total = sum(len(raw) for raw in MESSAGES)
    assert welcome == f"+OK maildrop has 3 messages ({total} octets)".encode()
    assert stat == (3, total)


async def test_login_via_implicit_tls(pop3: Pop3Harness, client_tls: ssl.SSLContext) -> None:
    def run() -> tuple[dict[str, list[str]], str, tuple[int, int]]:
        client = implicit(pop3, client_tls)
        capa = client.capa()
        try:
            raw_command(client, "STLS")  # poplib's stls() would refuse without asking
        except poplib.error_proto as error:
            stls_error = str(error)
        login(client)
        stat = client.stat()
        client.quit()
        return capa, stls_error, stat

    capa, stls_error, stat = await in_thread(run)
    assert "STLS" not in capa and "USER" in capa
    assert stls_error == "b'-ERR TLS is already active'"
    assert stat[0] == 3


async def test_stls_twice_and_after_login_refused(pop3: Pop3Harness,
                                                  client_tls: ssl.SSLContext) -> None:
    client = await RawClient.connect(pop3.plain_port)
    assert await client.command("STLS") == b"+OK begin TLS negotiation\r\n"
    await client.start_tls(client_tls)
    assert await client.command("STLS") == b"-ERR TLS is already active\r\n"
    await client.command(f"USER {ALICE}")
    assert (await client.command(f"PASS {ALICE_PW}")).startswith(b"+OK maildrop")
    assert await client.command("STLS") == b"-ERR STLS is not valid in this state\r\n"
    await client.send(b"CAPA\r\n")
    capabilities = (await client.multiline())[1]
    assert b"TOP" in capabilities and b"UIDL" in capabilities
    assert not [cap for cap in capabilities if cap.split()[0] in (b"USER", b"SASL", b"STLS")]
    await client.close()


async def test_bytes_injected_after_stls_are_not_executed(
        pop3: Pop3Harness, client_tls: ssl.SSLContext) -> None:
    client = await RawClient.connect(pop3.plain_port)
    # One write: STLS plus plaintext commands an attacker appended (RFC 2595 §4).
    await client.send(f"STLS\r\nUSER {ALICE}\r\nCAPA\r\n".encode())
    assert await client.line() == b"+OK begin TLS negotiation\r\n"
    await client.start_tls(client_tls)
    # Had the injected USER run, PASS would log in; had CAPA run, its list would come first.
    assert await client.command(f"PASS {ALICE_PW}") == b"-ERR USER first\r\n"
    await client.send(b"CAPA\r\n")
    status, lines = await client.multiline()
    assert status == b"+OK capability list follows\r\n"
    assert b"USER" in lines
    await client.close()


# -- authentication ------------------------------------------------------------------------


async def test_auth_plain_with_initial_response(pop3: Pop3Harness,
                                                client_tls: ssl.SSLContext) -> None:
    client = await RawClient.connect(pop3.tls_port, client_tls)
    reply = await client.command(f"AUTH PLAIN {plain_ir('', ALICE, ALICE_PW)}")
    assert reply.startswith(b"+OK maildrop has 3 messages")
    assert (await client.command("STAT")).startswith(b"+OK 3 ")
    await client.close()


async def test_auth_plain_without_initial_response(pop3: Pop3Harness,
                                                   client_tls: ssl.SSLContext) -> None:
    def run() -> bytes:
        client = implicit(pop3, client_tls)
        # The continuation "+ " passes for a positive reply in poplib.
        assert raw_command(client, "AUTH PLAIN") == b"+ "
        welcome = raw_command(client, plain_ir(ALICE, ALICE, ALICE_PW))
        client.quit()
        return welcome

    assert (await in_thread(run)).startswith(b"+OK maildrop has 3 messages")


async def test_auth_login_and_cancel(pop3: Pop3Harness, client_tls: ssl.SSLContext) -> None:
    client = await RawClient.connect(pop3.tls_port, client_tls)
    assert await client.command("AUTH PLAIN") == b"+ \r\n"
    assert await client.command("*") == b"-ERR authentication cancelled\r\n"
    assert await client.command("AUTH LOGIN") == f"+ {b64(b'Username:')}\r\n".encode()
    assert await client.command(b64(BOB.encode())) == f"+ {b64(b'Password:')}\r\n".encode()
    assert (await client.command(b64(BOB_PW.encode()))).startswith(b"+OK maildrop has 0")
    await client.close()


async def test_auth_listing_and_bad_mechanism(pop3: Pop3Harness,
                                              client_tls: ssl.SSLContext) -> None:
    client = await RawClient.connect(pop3.tls_port, client_tls)
    await client.send(b"AUTH\r\n")
    assert (await client.multiline())[1] == [b"PLAIN", b"LOGIN"]
    assert await client.command("AUTH CRAM-MD5") == b"-ERR unsupported SASL mechanism CRAM-MD5\r\n"
    assert await client.command("AUTH PLAIN !!!") == b"-ERR invalid base64 in SASL response\r\n"
    # authzid naming another user is refused like a wrong password.
    reply = await client.command(f"AUTH PLAIN {plain_ir(BOB, ALICE, ALICE_PW)}")
    assert reply == b"-ERR [AUTH] Authentication failed\r\n"
    await client.close()


async def test_wrong_password_and_hangup_after_repeated_failures(
        pop3: Pop3Harness, client_tls: ssl.SSLContext) -> None:
    client = await RawClient.connect(pop3.tls_port, client_tls)
    assert await client.command("PASS x") == b"-ERR USER first\r\n"
    for attempt in range(3):
        await client.command(f"USER {ALICE}")
        reply = await client.command(f"PASS wrong{attempt}")
        assert reply == b"-ERR [AUTH] Authentication failed\r\n"
    assert await client.is_closed_by_server()
    unknown = await RawClient.connect(pop3.tls_port, client_tls)
    await unknown.command("USER nobody@example.test")
    assert await unknown.command("PASS x") == b"-ERR [AUTH] Authentication failed\r\n"
    await unknown.close()


# -- the maildrop --------------------------------------------------------------------------


async def test_stat_list_uidl_top_retr(pop3: Pop3Harness, runtime: Runtime,
                                       client_tls: ssl.SSLContext) -> None:
    uidvalidity, uids = await inbox_uidvalidity(runtime, ALICE)

    def run() -> tuple[dict[str, object], list[tuple[bytes, list[bytes], int]]]:
        client = implicit(pop3, client_tls)
        login(client)
        out: dict[str, object] = {
            "list": client.list()[1], "list2": client.list(2),
            "uidl": client.uidl()[1], "uidl3": client.uidl(3),
            "top": client.top(3, 2)[1], "top0": client.top(1, 0)[1],
        }
        retrieved = [client.retr(n) for n in (1, 2, 3)]
        client.quit()
        return out, retrieved

    out, retrieved = await in_thread(run)
    assert out["list"] == [f"{n} {len(raw)}".encode() for n, raw in enumerate(MESSAGES, 1)]
    assert out["list2"] == f"+OK 2 {len(MESSAGES[1])}".encode()
    assert out["uidl"] == [f"{n} {uidvalidity}.{uid}".encode()
                           for n, uid in enumerate(uids, 1)]
    assert out["uidl3"] == f"+OK 3 {uidvalidity}.{uids[2]}".encode()
    assert out["top"] == [b"From: c@example.test", b"Subject: three", b"", b"l1", b"l2"]
    assert out["top0"] == [b"From: a@example.test", b"Subject: one", b""]
    for (status, lines, _), raw in zip(retrieved, MESSAGES, strict=True):
        assert status == f"+OK {len(raw)} octets".encode()
        # poplib un-stuffs the leading dots; the bytes must be the stored message.
        assert b"".join(line + b"\r\n" for line in lines) == raw


async def test_retr_on_the_wire_is_dot_stuffed_and_exact(
        pop3: Pop3Harness, runtime: Runtime, client_tls: ssl.SSLContext) -> None:
    big = b"Subject: big\r\n\r\n" + b"".join(
        (b"." if n % 3 == 0 else b"") + b"line %d " % n + b"x" * 70 + b"\r\n"
        for n in range(20000))
    await deliver(runtime, ALICE, big)
    client = await RawClient.connect(pop3.tls_port, client_tls)
    await client.command(f"USER {ALICE}")
    await client.command(f"PASS {ALICE_PW}")
    await client.send(b"RETR 2\r\n")
    raw = await asyncio.wait_for(client.reader.readuntil(b"\r\n.\r\n"), 10)
    expected = MESSAGES[1].replace(b"\r\n.", b"\r\n..")
    assert raw == f"+OK {len(MESSAGES[1])} octets\r\n".encode() + expected + b".\r\n"
    await client.send(b"RETR 4\r\n")
    status, lines = await client.multiline()
    assert status == f"+OK {len(big)} octets\r\n".encode()
    assert b"".join(line + b"\r\n" for line in lines) == big
    await client.close()


async def test_dele_and_rset(pop3: Pop3Harness, client_tls: ssl.SSLContext) -> None:
    client = await RawClient.connect(pop3.tls_port, client_tls)
    await client.command(f"USER {ALICE}")
    await client.command(f"PASS {ALICE_PW}")
    assert await client.command("DELE 2") == b"+OK message 2 deleted\r\n"
    assert await client.command("DELE 2") == b"-ERR message 2 already deleted\r\n"
    assert await client.command("RETR 2") == b"-ERR message 2 already deleted\r\n"
    assert await client.command("LIST 2") == b"-ERR message 2 already deleted\r\n"
    assert await client.command("DELE 9") == b"-ERR no message 9\r\n"
    size = len(MESSAGES[0]) + len(MESSAGES[2])
    assert await client.command("STAT") == f"+OK 2 {size}\r\n".encode()
    await client.send(b"UIDL\r\n")
    assert [line.split()[0] for line in (await client.multiline())[1]] == [b"1", b"3"]
    assert (await client.command("RSET")).startswith(b"+OK maildrop has 3 messages")
    assert (await client.command("STAT")).startswith(b"+OK 3 ")
    assert await client.command("NOOP") == b"+OK\r\n"
    assert (await client.command("QUIT")).startswith(b"+OK")
    assert await client.is_closed_by_server()
    await pop3.wait_sessions(0)
    assert len((await inbox_uidvalidity(pop3.runtime, ALICE))[1]) == 3


async def test_dele_quit_applies_and_uidls_stay(pop3: Pop3Harness, runtime: Runtime,
                                               client_tls: ssl.SSLContext) -> None:
    def first() -> list[bytes]:
        client = implicit(pop3, client_tls)
        login(client)
        before = client.uidl()[1]
        client.dele(2)
        assert client.quit().startswith(b"+OK")
        return before

    def second() -> tuple[list[bytes], tuple[int, int]]:
        client = via_stls(pop3, client_tls)
        login(client)
        after = client.uidl()[1], client.stat()
        client.quit()
        return after

    before = await in_thread(first)
    await pop3.wait_sessions(0)
    after, stat = await in_thread(second)
    ids = [line.split()[1] for line in before]
    assert [line.split()[1] for line in after] == [ids[0], ids[2]]
    assert stat == (2, len(MESSAGES[0]) + len(MESSAGES[2]))
    assert len((await inbox_uidvalidity(runtime, ALICE))[1]) == 2


async def test_dropped_connection_applies_nothing(pop3: Pop3Harness, runtime: Runtime,
                                                  client_tls: ssl.SSLContext) -> None:
    client = await RawClient.connect(pop3.tls_port, client_tls)
    await client.command(f"USER {ALICE}")
    await client.command(f"PASS {ALICE_PW}")
    assert await client.command("DELE 1") == b"+OK message 1 deleted\r\n"
    await client.close()
    await pop3.wait_sessions(0)
    assert len((await inbox_uidvalidity(runtime, ALICE))[1]) == 3
    # The lock went with the connection.
    again = await RawClient.connect(pop3.tls_port, client_tls)
    await again.command(f"USER {ALICE}")
    assert (await again.command(f"PASS {ALICE_PW}")).startswith(b"+OK maildrop has 3")
    await again.close()


async def test_mailbox_in_use(pop3: Pop3Harness, client_tls: ssl.SSLContext) -> None:
    first = await RawClient.connect(pop3.tls_port, client_tls)
    await first.command(f"USER {ALICE}")
    assert (await first.command(f"PASS {ALICE_PW}")).startswith(b"+OK")

    second = await RawClient.connect(pop3.plain_port)
    await second.command("STLS")
    await second.start_tls(client_tls)
    await second.command(f"USER {ALICE}")
    reply = await second.command(f"PASS {ALICE_PW}")
    assert reply == b"-ERR [IN-USE] maildrop already in use by another POP3 session\r\n"
    # Another account is not affected.
    await second.command(f"USER {BOB}")
    assert (await second.command(f"PASS {BOB_PW}")).startswith(b"+OK maildrop has 0")

    assert (await first.command("QUIT")).startswith(b"+OK")
    third = await RawClient.connect(pop3.tls_port, client_tls)
    await third.command(f"USER {ALICE}")
    assert (await third.command(f"PASS {ALICE_PW}")).startswith(b"+OK maildrop has 3")
    for client in (first, second, third):
        await client.close()


async def test_pipelined_commands(pop3: Pop3Harness, client_tls: ssl.SSLContext) -> None:
    client = await RawClient.connect(pop3.tls_port, client_tls)
    await client.send(f"USER {ALICE}\r\nPASS {ALICE_PW}\r\nSTAT\r\nLIST\r\nDELE 1\r\n"
                      "UIDL 1\r\nTOP 2 0\r\nNOOP\r\nQUIT\r\n".encode())
    assert await client.line() == b"+OK send PASS\r\n"
    assert (await client.line()).startswith(b"+OK maildrop has 3 messages")
    assert (await client.line()).startswith(b"+OK 3 ")
    assert len((await client.multiline())[1]) == 3
    assert await client.line() == b"+OK message 1 deleted\r\n"
    assert await client.line() == b"-ERR message 1 already deleted\r\n"
    assert (await client.multiline())[1][:2] == [b"From: b@example.test", b"Subject: dots"]
    assert await client.line() == b"+OK\r\n"
    assert await client.line() == b"+OK postroom POP3 server signing off (2 messages left)\r\n"
    assert await client.is_closed_by_server()


async def test_garbage_input_survives(pop3: Pop3Harness, client_tls: ssl.SSLContext) -> None:
    client = await RawClient.connect(pop3.tls_port, client_tls)
    assert await client.command("HELLO THERE") == b"-ERR unknown command\r\n"
    await client.send(b"\xff\xfe\x00\x01\r\n")
    assert await client.line() == b"-ERR line is not valid UTF-8\r\n"
    await client.send(b"\r\n")
    assert await client.line() == b"-ERR unknown command\r\n"
    await client.command(f"USER {ALICE}")
    await client.command(f"PASS {ALICE_PW}")
    assert await client.command("RETR 1 2") == b"-ERR RETR needs one message number\r\n"
    assert await client.command("TOP x 1") == b"-ERR invalid number 'x'\r\n"
    assert (await client.command("STAT")).startswith(b"+OK 3 ")
    await client.send(b"A" * 5000 + b"\r\n")
    assert await client.line() == b"-ERR line too long\r\n"
    assert await client.is_closed_by_server()


async def test_two_accounts_are_isolated(pop3: Pop3Harness, runtime: Runtime,
                                         client_tls: ssl.SSLContext) -> None:
    bob_message = b"Subject: for bob\r\n\r\nhello bob\r\n"
    await deliver(runtime, BOB, bob_message)

    def run() -> tuple[list[bytes], list[bytes]]:
        alice, bob = implicit(pop3, client_tls), implicit(pop3, client_tls)
        login(alice)
        login(bob, BOB, BOB_PW)
        alice_list, bob_list = alice.list()[1], bob.list()[1]
        bob_body = bob.retr(1)[1]
        bob.dele(1)
        bob.quit()
        alice.quit()
        return [*alice_list], [*bob_list, *bob_body]

    alice_list, bob_view = await in_thread(run)
    assert len(alice_list) == 3
    assert bob_view == [f"1 {len(bob_message)}".encode(), b"Subject: for bob", b"",
                        b"hello bob"]
    assert len((await inbox_uidvalidity(runtime, ALICE))[1]) == 3
    assert (await inbox_uidvalidity(runtime, BOB))[1] == []


# -- concurrency with IMAP, failures, shutdown, timeouts ------------------------------------


async def test_message_expunged_meanwhile(pop3: Pop3Harness, runtime: Runtime,
                                          client_tls: ssl.SSLContext) -> None:
    client = await RawClient.connect(pop3.tls_port, client_tls)
    await client.command(f"USER {ALICE}")
    await client.command(f"PASS {ALICE_PW}")
    account = await runtime.store.get_account(ALICE)
    assert account is not None
    inbox = await runtime.store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    _, uids = await inbox_uidvalidity(runtime, ALICE)
    await runtime.store.expunge(inbox.id, [uids[0]])  # as an IMAP client would
    assert await client.command("RETR 1") == b"-ERR message 1 was deleted by another session\r\n"
    assert await client.command("TOP 1 0") == b"-ERR message 1 was deleted by another session\r\n"
    assert (await client.command("STAT")).startswith(b"+OK 3 ")  # the snapshot stands
    assert await client.command("DELE 1") == b"+OK message 1 deleted\r\n"
    assert await client.command("DELE 3") == b"+OK message 3 deleted\r\n"
    assert (await client.command("QUIT")).startswith(b"+OK")
    await pop3.wait_sessions(0)
    assert (await inbox_uidvalidity(runtime, ALICE))[1] == [uids[1]]


async def test_store_failure_is_an_err_not_a_traceback(
        pop3: Pop3Harness, runtime: Runtime, client_tls: ssl.SSLContext,
        monkeypatch: pytest.MonkeyPatch) -> None:
    client = await RawClient.connect(pop3.tls_port, client_tls)
    await client.command(f"USER {ALICE}")
    await client.command(f"PASS {ALICE_PW}")

    async def broken(*args: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(runtime.blobs, "read", broken)
    assert await client.command("RETR 1") == b"-ERR [SYS/TEMP] internal server error\r\n"
    assert await client.command("NOOP") == b"+OK\r\n"
    monkeypatch.setattr(runtime.store, "expunge", broken)
    await client.command("DELE 1")
    reply = await client.command("QUIT")
    assert reply == b"-ERR [SYS/TEMP] some deleted messages not removed\r\n"
    assert await client.is_closed_by_server()


async def test_shutdown_refuses_and_applies_nothing(
        pop3: Pop3Harness, runtime: Runtime, client_tls: ssl.SSLContext) -> None:
    idle = await RawClient.connect(pop3.tls_port, client_tls)
    busy = await RawClient.connect(pop3.tls_port, client_tls)
    await busy.command(f"USER {ALICE}")
    await busy.command(f"PASS {ALICE_PW}")
    await busy.command("DELE 1")
    runtime.shutting_down.set()
    # An idle connection is told at once; the next command of any session is refused.
    assert await idle.line() == b"-ERR [SYS/TEMP] shutting down\r\n"
    assert await idle.is_closed_by_server()
    assert await busy.line() == b"-ERR [SYS/TEMP] shutting down\r\n"
    assert await busy.is_closed_by_server()
    await pop3.wait_sessions(0)
    assert len((await inbox_uidvalidity(runtime, ALICE))[1]) == 3


async def test_idle_timeout(runtime: Runtime, client_tls: ssl.SSLContext) -> None:
    harness = await Pop3Harness(runtime, idle_timeout=0.2).start()
    try:
        client = await RawClient.connect(harness.tls_port, client_tls)
        assert await client.line() == b"-ERR autologout: idle for too long\r\n"
        assert await client.is_closed_by_server()
    finally:
        await harness.stop()


async def test_uidl_stable_across_restart(pop3: Pop3Harness, runtime: Runtime,
                                          client_tls: ssl.SSLContext) -> None:
    def uidls(harness: Pop3Harness = pop3) -> list[bytes]:
        client = implicit(harness, client_tls)
        login(client)
        listing = client.uidl()[1]
        client.quit()
        return listing

    before = await in_thread(uidls)
    await pop3.wait_sessions(0)
    # A fresh store over the same files (or database), as after a restart.
    reopened, blobs = await open_store(runtime.config, ChangeFeed())
    try:
        restarted = dataclasses.replace(runtime, store=reopened, blobs=blobs,
                                        accounts=AccountService(reopened))
        harness = await Pop3Harness(restarted).start()
        try:
            assert await in_thread(lambda: uidls(harness)) == before
        finally:
            await harness.stop()
    finally:
        await reopened.close()


async def test_retr_read_whole_is_exact_for_a_file_blob(
        pop3: Pop3Harness, runtime: Runtime, client_tls: ssl.SSLContext) -> None:
    """Issue 22: a message above the inline-row size but under RETR_WHOLE (a blob file,
    read whole and written once) comes out dot-stuffed and byte-exact."""
    middle = b"Subject: middle\r\n\r\n" + b"".join(
        (b"." if n % 5 == 0 else b"") + b"row %d " % n + b"y" * 60 + b"\r\n"
        for n in range(1500))
    assert 64 * 1024 < len(middle) <= RETR_WHOLE
    await deliver(runtime, ALICE, middle)
    client = await RawClient.connect(pop3.tls_port, client_tls)
    await client.command(f"USER {ALICE}")
    await client.command(f"PASS {ALICE_PW}")
    await client.send(f"RETR {len(MESSAGES) + 1}\r\n".encode())
    status, lines = await client.multiline()  # un-stuffs: a line left unstuffed loses a "."
    assert status == f"+OK {len(middle)} octets\r\n".encode()
    assert b"".join(line + b"\r\n" for line in lines) == middle
