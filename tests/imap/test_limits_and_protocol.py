"""Limits, error mapping, rev1 vs rev2 answers, pipelining, shutdown and timeouts."""

from __future__ import annotations

import dataclasses
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from postroom.imap.commands import SPECS
from postroom.imap.wire.commands.misc import Namespace
from tests.conftest import make_config
from tests.imap.conftest import ImapThread, RawClient, login_raw, simple_message


@pytest.fixture
def small_server(tmp_path: Path, server_cert: tuple[Path, Path]) -> Iterator[ImapThread]:
    config = make_config(tmp_path, server_cert, POSTFIX_MESSAGE_SIZE_LIMIT=1000)
    with ImapThread(config, preauth_timeout=1.0) as server:
        yield server


def test_literal_over_limit_refused_without_reading(small_server: ImapThread,
                                                    client_tls: ssl.SSLContext) -> None:
    client = login_raw(small_server, client_tls)
    assert b"APPENDLIMIT=1000" in client.command(b"c", b"CAPABILITY")[0]
    client.send(b"a APPEND INBOX {5000}\r\n")
    # No "+" continuation: the tagged NO comes first and the client sends no literal.
    assert client.line() == b"a NO [TOOBIG] literal too big"
    assert client.command(b"n", b"NOOP") == [b"n OK NOOP completed"]
    # A non-synchronizing literal is sent regardless: skipped, never run as commands.
    payload = b"x FETCH 1:* (FLAGS)\r\n" * 300
    client.send(b"b APPEND INBOX {%d+}\r\n" % len(payload) + payload + b"\r\n")
    assert client.line() == b"b NO [TOOBIG] literal too big"
    assert client.command(b"m", b"NOOP") == [b"m OK NOOP completed"]
    message = simple_message("fits")
    lines = client.command(b"d", b"APPEND INBOX {%d+}\r\n" % len(message) + message)
    assert lines[-1].startswith(b"d OK [APPENDUID ")
    assert len(small_server.messages()) == 1
    client.close()


def test_overlong_line_refused(imap_server: ImapThread, client_tls: ssl.SSLContext) -> None:
    client = login_raw(imap_server, client_tls)
    client.send(b"a SEARCH " + b"ALL " * 40000 + b"\r\n")
    assert client.line().startswith(b"a BAD")
    assert client.command(b"n", b"NOOP") == [b"n OK NOOP completed"]
    client.close()


def test_literal_continuation_and_pipelining(imap_server: ImapThread,
                                             client_tls: ssl.SSLContext) -> None:
    client = login_raw(imap_server, client_tls)
    client.send(b"a CREATE {4}\r\n")
    assert client.line() == b"+ Ready for literal data"
    client.send(b"Work\r\n")
    answer = client.until_tagged(b"a")
    assert len(answer) == 1 and answer[0].endswith(b"CREATE completed")
    client.send(b"1 SELECT Work\r\n2 NOOP\r\n3 UNSELECT\r\n4 NOOP\r\n")
    lines = client.until_tagged(b"4")
    tagged = [line.split(b" ")[0] for line in lines if not line.startswith(b"*")]
    assert tagged == [b"1", b"2", b"3", b"4"]
    assert client.command(b"x", b"BOGUS") == [b"x BAD unknown command BOGUS"]
    assert client.command(b"y", b"FETCH 1 FLAGS")[0].startswith(b"y BAD FETCH not allowed")
    assert client.command(b"z", b"LOGIN a b")[0].startswith(b"z BAD")
    client.close()


def test_rev2_esearch_and_searchres(imap_server: ImapThread, client_tls: ssl.SSLContext) -> None:
    for index in range(5):
        imap_server.deliver(simple_message(f"m{index}"),
                            flags=frozenset({"\\Seen"}) if index % 2 else frozenset())
    client = login_raw(imap_server, client_tls)
    assert client.command(b"e", b"ENABLE IMAP4rev2")[0] == b"* ENABLED IMAP4rev2"
    lines = client.command(b"s", b"SELECT INBOX")
    assert b"* 5 EXISTS" in lines and not any(b"RECENT" in line for line in lines)
    assert b'* LIST () "/" "INBOX"' in lines
    assert client.command(b"a", b"SEARCH UNSEEN")[0] == b'* ESEARCH (TAG "a") ALL 1,3,5'
    lines = client.command(b"b", b"UID SEARCH RETURN (MIN MAX COUNT) SEEN")
    assert lines[0] == b'* ESEARCH (TAG "b") UID MIN 2 MAX 4 COUNT 2'
    assert client.command(b"c", b"SEARCH RETURN (SAVE) UNSEEN") == [b"c OK SEARCH completed"]
    lines = client.command(b"d", b"FETCH $ (UID)")
    assert lines[:3] == [b"* 1 FETCH (UID 1)", b"* 3 FETCH (UID 3)", b"* 5 FETCH (UID 5)"]
    lines = client.command(b"f", b"SEARCH RETURN (COUNT) $ SEEN")
    assert lines[0] == b'* ESEARCH (TAG "f") COUNT 0'
    lines = client.command(b"g", b"FETCH 1 (FLAGS)")
    assert lines[0] == b"* 1 FETCH (FLAGS ())"  # no \Recent in IMAP4rev2
    lines = client.command(b"h", b"SEARCH RETURN () NOT ALL")
    assert lines[0] == b'* ESEARCH (TAG "h")'
    client.close()


def test_unexpected_error_is_serverbug_and_connection_survives(
    imap_server: ImapThread, client_tls: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(ctx: object, command: object) -> NoReturn:
        raise RuntimeError("boom: secret detail")

    monkeypatch.setitem(SPECS, Namespace, dataclasses.replace(SPECS[Namespace], handle=broken))
    client = login_raw(imap_server, client_tls)
    lines = client.command(b"a", b"NAMESPACE")
    assert lines == [b"a NO [SERVERBUG] internal server error"]
    assert client.command(b"b", b"NOOP") == [b"b OK NOOP completed"]
    client.close()


def test_shutdown_says_bye(imap_server: ImapThread, client_tls: ssl.SSLContext) -> None:
    client = login_raw(imap_server, client_tls)
    client.command(b"s", b"SELECT INBOX")
    client.send(b"i IDLE\r\n")
    assert client.line() == b"+ idling"

    async def shut_down() -> None:
        imap_server.rt.shutting_down.set()

    imap_server.call(shut_down())
    assert client.line() == b"* BYE postroom shutting down"
    with pytest.raises((ConnectionError, OSError)):
        client.line()
    client.close()


def test_preauth_timeout(small_server: ImapThread) -> None:
    client = RawClient(small_server.port)
    client.sock.settimeout(5)
    assert client.line() == b"* BYE autologout: idle for too long"
    with pytest.raises((ConnectionError, socket.timeout)):
        client.line()
    client.close()


def test_logout(imap_server: ImapThread, client_tls: ssl.SSLContext) -> None:
    client = login_raw(imap_server, client_tls)
    assert client.command(b"o", b"LOGOUT") == [b"* BYE postroom logging out",
                                              b"o OK LOGOUT completed"]
    with pytest.raises(ConnectionError):
        client.line()
    client.close()


def test_garbage_stream_is_disconnected(imap_server: ImapThread) -> None:
    client = RawClient(imap_server.port)
    client.send(b"\x16\x03\x01 not imap\r\n" * 30)
    lines = []
    with pytest.raises(ConnectionError):
        while True:
            lines.append(client.line())
    assert lines[-1] == b"* BYE too many invalid commands"
    assert all(line.startswith(b"* BAD") or line.startswith(b"\x16") for line in lines[:-1])
    client.close()


def test_autologout_after_login_and_in_idle(tmp_path: Path, server_cert: tuple[Path, Path],
                                            client_tls: ssl.SSLContext) -> None:
    config = make_config(tmp_path, server_cert)
    with ImapThread(config, idle_timeout=1.0) as server:
        client = login_raw(server, client_tls)
        client.sock.settimeout(10)
        assert client.line() == b"* BYE autologout: idle for too long"  # RFC 9051 §5.4
        client.close()
        client = login_raw(server, client_tls)
        client.send(b"i IDLE\r\n")
        assert client.line() == b"+ idling"
        assert client.line() == b"* BYE autologout: idle for too long"
        client.close()


def test_append_literal8_and_check(imap_server: ImapThread, client_tls: ssl.SSLContext) -> None:
    client = login_raw(imap_server, client_tls)
    message = b"Subject: binary\r\nContent-Type: application/octet-stream\r\n\r\n\x00\x01\xff"
    lines = client.command(b"a", b"APPEND INBOX (\\Seen) ~{%d+}\r\n" % len(message) + message)
    assert lines[-1].startswith(b"a OK [APPENDUID ")  # RFC 3516 §4.4 literal8
    client.command(b"s", b"SELECT INBOX")
    assert client.command(b"k", b"CHECK") == [b"k OK CHECK completed"]
    lines = client.command(b"f", b"FETCH 1 (BINARY.PEEK[1] BINARY.SIZE[1])")
    assert lines[0] == b"* 1 FETCH (BINARY[1] ~{3}\r\n\x00\x01\xff BINARY.SIZE[1] 3)"
    client.close()
