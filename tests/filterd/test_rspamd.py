"""rspamd: its answer read and applied (table tests), and Debian's rspamd started by the
test judging mail sent over real SMTP; learning; a down, slow or garbled rspamd."""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import json
import smtplib
import ssl
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postroom.checks.api import Action
from postroom.checks.httpclient import Endpoint, read_response, render_request
from postroom.checks.rspamd import RspamdLearner, parse_answer, render_verdict
from postroom.checks.scanning import ScannerError
from tests.conftest import make_config
from tests.filterd.conftest import Rspamd, filter_config
from tests.filterd.daemons import GTUBE, RSPAMD_PASSWORD, free_port, start_redis, start_rspamd
from tests.support.server import AppThread

USER = "user@example.test"
SENDER = "someone@remote.example"


def message(body: bytes, subject: bytes = b"Hello") -> bytes:
    return (b"From: someone@remote.example\r\nTo: user@example.test\r\nSubject: " + subject
            + b"\r\nMessage-ID: <x@remote.example>\r\n\r\n" + body + b"\r\n")


# -- the answer, read and applied -----------------------------------------------------------

ANSWER = {
    "action": "add header", "score": 7.5, "required_score": 15,
    "symbols": {"A": {"name": "A", "score": 5.0, "options": ["x", "y"]},
                "B": {"name": "B", "score": 2.5}, "BAD": "nonsense"},
    "milter": {"add_headers": {"X-Spamd-Result": {"value": "default: False\n [7.5]",
                                                  "order": 0},
                               "X-Rspamd-Server": "scanner",
                               "X-Two": [{"value": "1"}, {"value": "2"}],
                               "Received": "forged", "Bad Name": "x"}},
}


def test_an_answer_is_read_with_its_symbols_and_fields() -> None:
    answer = parse_answer(json.dumps(ANSWER).encode())
    assert (answer.action, answer.score, answer.required) == ("add header", 7.5, 15.0)
    assert [(s.name, s.score, s.detail) for s in answer.symbols] == [
        ("A", 5.0, "x,y"), ("B", 2.5, "")]
    assert answer.add_headers == (("X-Spamd-Result", "default: False\r\n\t[7.5]"),
                                  ("X-Rspamd-Server", "scanner"), ("X-Two", "1"),
                                  ("X-Two", "2"))


@pytest.mark.parametrize("raw", [b"", b"not json", b"[]", b'{"score": 1}',
                                 b'{"action": 3, "score": 1}', b'{"action": "x", "score": "a"}'])
def test_garbage_is_a_scanner_error(raw: bytes) -> None:
    with pytest.raises(ScannerError):
        parse_answer(raw)


@pytest.mark.parametrize(("action", "expected", "code"), [
    ("reject", Action.REFUSE, 554), ("soft reject", Action.TEMPFAIL, 451),
    ("greylist", Action.TEMPFAIL, 451), ("add header", Action.QUARANTINE, None),
    ("rewrite subject", Action.QUARANTINE, None), ("no action", Action.ACCEPT, None)])
def test_each_action_has_its_verdict(tmp_path: Path, server_cert: tuple[Path, Path],
                                     action: str, expected: Action, code: int | None) -> None:
    config = make_config(tmp_path, server_cert)
    answer = parse_answer(json.dumps({**ANSWER, "action": action, "subject": "[SPAM] x"}
                                     ).encode())
    verdict = render_verdict(answer, config)
    assert verdict.action == expected
    assert (verdict.reply.code if verdict.reply else None) == code
    if expected in (Action.ACCEPT, Action.QUARANTINE):
        assert verdict.score == 7.5 and [s.name for s in verdict.symbols] == ["A", "B"]
        assert b"X-Rspamd-Server: scanner\r\n" in verdict.headers
    if expected == Action.QUARANTINE:
        assert verdict.folder == "Junk" and b"X-Spam: Yes\r\n" in verdict.headers
    if action == "rewrite subject":
        assert b"X-Rspamd-Subject: [SPAM] x\r\n" in verdict.headers


def test_spam_to_inbox_keeps_tagged_spam_in_inbox(tmp_path: Path,
                                                  server_cert: tuple[Path, Path]) -> None:
    config = make_config(tmp_path, server_cert, SPAM_TO_INBOX=1)
    verdict = render_verdict(parse_answer(json.dumps(ANSWER).encode()), config)
    assert verdict.action == Action.ACCEPT and b"X-Spam: Yes\r\n" in verdict.headers


def test_a_request_never_carries_a_line_break() -> None:
    endpoint = Endpoint.parse("http://127.0.0.1:11333/")
    head = render_request(endpoint, "/checkv2", [("Rcpt", "a@b"), ("Rcpt", "c@d")], 5)
    assert head.startswith(b"POST /checkv2 HTTP/1.1\r\nHost: 127.0.0.1:11333\r\n")
    assert b"Rcpt: a@b\r\nRcpt: c@d\r\n\r\n" in head
    with pytest.raises(ValueError, match="refused"):
        render_request(endpoint, "/checkv2", [("Helo", "x\r\nPassword: y")], 5)


@pytest.mark.parametrize("raw", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\n1;x=y\r\n}\r\n0\r\n\r\n",
    b"HTTP/1.0 200 OK\r\n\r\n{}",
])
async def test_responses_of_each_framing_are_read(raw: bytes) -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(raw)
    reader.feed_eof()
    response = await read_response(reader)
    assert (response.status, response.body) == (200, b"{}")


@pytest.mark.parametrize("raw", [b"SPAMD/1.0 0 EX_OK\r\n\r\n", b"HTTP/1.1 200 OK\r\nbad\r\n\r\n",
                                 b"HTTP/1.1 \xb2\xb2\xb2 OK\r\n\r\n",
                                 b"HTTP/1.1 200 OK\r\nContent-Length: \xb9\r\n\r\n",
                                 b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"])
async def test_responses_that_are_not_http_are_scanner_errors(raw: bytes) -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(raw)
    reader.feed_eof()
    with pytest.raises(ScannerError):
        await read_response(reader)


# -- Debian's rspamd, over SMTP -------------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path, server_cert: tuple[Path, Path], rspamd: Rspamd
           ) -> Iterator[AppThread]:
    config = filter_config(tmp_path, server_cert, ENABLE_RSPAMD=1, RSPAMD_URL=rspamd.url)
    with AppThread(config) as running:
        running.add_account(USER, "correct horse battery")
        yield running


def send(server: AppThread, data: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=20) as client:
        client.sendmail(SENDER, [USER], data)


def test_rspamd_rejects_gtube_over_smtp(server: AppThread) -> None:
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(server, message(GTUBE))
    # rspamd's own words: its verdict, not the built-in GTUBE symbol's (checked after it)
    assert (refused.value.smtp_code, refused.value.smtp_error) == (554, b"5.7.1 Gtube pattern")
    assert server.inbox_messages(USER) == []


def test_rspamd_add_header_files_into_junk_with_its_symbols(server: AppThread) -> None:
    send(server, message(b"please postroom-tag-me now"))
    (stored,) = server.inbox_messages(USER, "Junk")
    assert b"X-Spam: Yes\r\n" in stored
    assert server.inbox_messages(USER) == []


def test_rspamd_rewrite_subject_is_recorded(server: AppThread) -> None:
    send(server, message(b"postroom-rewrite-me", subject=b"Offer"))
    (stored,) = server.inbox_messages(USER, "Junk")
    assert b"X-Rspamd-Subject: *** SPAM *** Offer\r\n" in stored


def test_rspamd_soft_reject_is_451(server: AppThread) -> None:
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(server, message(b"postroom-soft-me"))
    assert (refused.value.smtp_code, refused.value.smtp_error[:6]) == (451, b"4.7.1 ")


def test_rspamd_no_action_delivers_to_inbox(server: AppThread) -> None:
    send(server, message(b"Lunch tomorrow at noon?"))
    (stored,) = server.inbox_messages(USER)
    assert b"X-Spam: Yes" not in stored


async def test_rspamd_learns_with_the_controller_password(rspamd: Rspamd) -> None:
    learner = RspamdLearner(Endpoint.parse(rspamd.controller_url), RSPAMD_PASSWORD, 10)
    spam = message(b"cheap pills casino lottery winner click now", subject=b"Winner")
    assert await learner.learn(spam, is_spam=True)
    assert await learner.learn(spam, is_spam=True)  # "already learned" is no failure
    assert await learner.learn(message(b"see you at the meeting"), is_spam=False)
    wrong = RspamdLearner(Endpoint.parse(rspamd.controller_url), "wrong", 10)
    assert not await wrong.learn(message(b"another one"), is_spam=True)


# -- rspamd down, slow, or answering garbage ----------------------------------------------


class FakeDaemon:
    """A listener on 127.0.0.1 that answers every connection with `answer` (None: reads
    and never answers)."""

    def __init__(self, answer: bytes | None) -> None:
        import socket

        self.answer, self.done = answer, threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.sock.settimeout(30)
        held = []
        try:
            while not self.done.is_set():
                conn, _ = self.sock.accept()
                held.append(conn)
                conn.recv(65536)
                if self.answer is not None:
                    conn.sendall(self.answer)
                    conn.close()
        except OSError:
            pass
        finally:
            for conn in held:
                conn.close()

    def close(self) -> None:
        self.done.set()
        self.sock.close()


@pytest.mark.parametrize("kind", ["down", "slow", "garbage"])
@pytest.mark.parametrize("fail_open", [0, 1])
def test_a_failing_rspamd_never_passes_mail_silently(
        tmp_path: Path, server_cert: tuple[Path, Path], kind: str, fail_open: int) -> None:
    fake = None
    if kind == "down":
        url = f"http://127.0.0.1:{free_port()}"
    else:
        fake = FakeDaemon(None if kind == "slow" else b"HTTP/1.1 200 OK\r\n\r\nnot json")
        url = f"http://127.0.0.1:{fake.port}"
    config = filter_config(tmp_path, server_cert, ENABLE_RSPAMD=1, RSPAMD_URL=url,
                           FILTER_TIMEOUT=0.5, FILTER_FAIL_OPEN=fail_open)
    try:
        with AppThread(config) as server:
            server.add_account(USER, "correct horse battery")
            if fail_open:
                send(server, message(b"hello"))
                (stored,) = server.inbox_messages(USER)
                assert b"X-Postroom-Filter: unscanned (rspamd: " in stored
                return
            with pytest.raises(smtplib.SMTPDataError) as refused:
                send(server, message(b"hello"))
            assert (refused.value.smtp_code, refused.value.smtp_error[:6]) == (451, b"4.7.1 ")
            assert server.inbox_messages(USER) == []
    finally:
        if fake is not None:
            fake.close()


def learned_count(rspamd: Rspamd) -> int:
    request = urllib.request.Request(rspamd.controller_url + "/stat",
                                     headers={"Password": RSPAMD_PASSWORD})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return int(json.load(answer)["learned"])


def test_imap_moves_teach_rspamd(tmp_path: Path, server_cert: tuple[Path, Path],
                                 client_tls: ssl.SSLContext, rspamd: Rspamd) -> None:
    config = filter_config(tmp_path, server_cert, ENABLE_RSPAMD=1, RSPAMD_URL=rspamd.url,
                           RSPAMD_LEARN=1, RSPAMD_CONTROLLER_URL=rspamd.controller_url,
                           RSPAMD_PASSWORD=RSPAMD_PASSWORD)
    before = learned_count(rspamd)
    with AppThread(config) as server:
        server.add_account(USER, "correct horse battery")
        imap = imaplib.IMAP4("127.0.0.1", server.port("imap"), timeout=20)
        try:
            imap.starttls(client_tls)
            imap.login(USER, "correct horse battery")
            imap.append("INBOX", "", None, message(b"jackpot casino bonus for you today"))
            imap.append("Junk", "", None, message(b"the minutes of our budget meeting"))
            imap.select("INBOX")
            assert imap.uid("MOVE", "1", "Junk")[0] == "OK"  # /learnspam
            imap.select("Junk")
            assert imap.uid("MOVE", "1", "INBOX")[0] == "OK"  # /learnham
        finally:
            imap.logout()
    assert learned_count(rspamd) == before + 2


# -- any bytes: an answer or a ScannerError, never anything else ------------------------------


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_any_answer_body_parses_or_is_garbage(raw: bytes) -> None:
    try:
        answer = parse_answer(raw)
    except ScannerError:
        return
    assert all("\r" not in value and "\n\t" not in value.replace("\r\n\t", "")
               for _, value in answer.add_headers)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
async def test_any_response_bytes_read_or_are_garbage(raw: bytes) -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(raw)
    reader.feed_eof()
    with contextlib.suppress(ScannerError, asyncio.IncompleteReadError):
        await read_response(reader)


def test_a_stopped_rspamd_gives_451_and_the_retry_arrives_once(
        tmp_path: Path, server_cert: tuple[Path, Path]) -> None:
    redis, redis_port = start_redis(tmp_path / "redis")
    daemon, normal, _ = start_rspamd(tmp_path / "rspamd", redis_port)
    try:
        config = filter_config(tmp_path, server_cert, ENABLE_RSPAMD=1, FILTER_TIMEOUT=5,
                               RSPAMD_URL=f"http://127.0.0.1:{normal}")
        with AppThread(config) as server:
            server.add_account(USER, "correct horse battery")
            daemon.stop()
            with pytest.raises(smtplib.SMTPDataError) as refused:
                send(server, message(b"an important letter"))
            assert (refused.value.smtp_code, refused.value.smtp_error[:6]) == (451, b"4.7.1 ")
            assert server.inbox_messages(USER) == []
            daemon.start()
            send(server, message(b"an important letter"))  # the client's retry
            (stored,) = server.inbox_messages(USER)
            assert stored.endswith(b"\r\n\r\nan important letter\r\n")
    finally:
        daemon.stop()
        redis.stop()
