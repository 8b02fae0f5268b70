"""Protocol attacks against the whole App (issue 7): no open relay on port 25 under any
address trick, SMTP smuggling variants, and hostile MIME that must never crash a session.
(Plaintext pipelined after STARTTLS/STLS is covered per protocol in tests/smtp/
test_starttls.py and tests/pop3/test_session.py.)"""

from __future__ import annotations

import imaplib
import poplib
import smtplib
import ssl

import pytest

from tests.hardening.conftest import PASSWORD, USER, StartApp, connect, is_closed, read_line
from tests.support.server import AppThread

pytestmark = pytest.mark.timeout(120)

OTHER = "other@example.test"

RELAY_TRICKS = [
    "<x@elsewhere.example>",
    "<x@ELSEWHERE.EXAMPLE>",
    "<x@elsewhere.example.>",
    "<x%elsewhere.example@example.test>",  # %-hack
    "<x%elsewhere.example%example.test@example.test>",
    "<elsewhere.example!x@example.test>",  # bang path
    "<x!elsewhere.example@example.test>",
    "<@example.test:x@elsewhere.example>",  # source routes
    "<@example.test,@mail.example.test:x@elsewhere.example>",
    "<@elsewhere.example:user@example.test>",
    "<x@[127.0.0.1]>",  # address literals
    "<user@[127.0.0.1]>",
    "<x@[IPv6:::1]>",
    "<x@[192.0.2.1]>",
    '<"x@elsewhere.example"@example.test>',  # quoted local parts
    '<"x%elsewhere.example"@example.test>',
    '<"elsewhere.example!x"@example.test>',
    '<"x@elsewhere.example">',
    "<x@elsewhere.example@example.test>",
    "<x@example.test.elsewhere.example>",
    "<x@example.test@elsewhere.example>",
    "<x@exаmple.test> SMTPUTF8",  # Cyrillic "а": a different domain
    "<user@ехample.test> SMTPUTF8",  # Cyrillic "е" and "х"
    "<x@elsewhere.example\\@example.test>",
    "x@elsewhere.example",
    "<x@elsewhere.example",
    "<x@elsewhere.example> <y@example.test>",
]


def smtp_session(app: AppThread) -> smtplib.SMTP:
    smtp = smtplib.SMTP("127.0.0.1", app.port("smtp"), timeout=10)
    smtp.ehlo("client.example")
    return smtp


def command(smtp: smtplib.SMTP, line: str) -> tuple[int, bytes]:
    """smtplib's docmd, but UTF-8 on the wire (SMTPUTF8 addresses)."""
    smtp.send(line.encode() + b"\r\n")
    return smtp.getreply()


def test_no_open_relay_under_address_tricks(start_app: StartApp) -> None:
    with start_app() as app:
        app.call(app.runtime.accounts.add_account(OTHER, PASSWORD))
        for trick in RELAY_TRICKS:  # a session each: refusals count towards a hang-up
            smtp = smtp_session(app)
            utf8 = " SMTPUTF8" if "SMTPUTF8" in trick else ""
            assert smtp.docmd(f"MAIL FROM:<a@remote.example>{utf8}")[0] == 250
            code, text = command(smtp, "RCPT TO:" + trick)
            assert code >= 500, (trick, code, text)
            assert smtp.docmd("DATA")[0] == 554, trick  # no valid recipients
            smtp.quit()
        assert app.call(app.runtime.store.list_queue()) == []


def test_tricks_against_a_catch_all_stay_local(start_app: StartApp) -> None:
    """A catch-all accepts any local part; none of these may leave the server."""
    with start_app() as app:
        app.call(app.runtime.accounts.add_alias("@example.test", USER))
        accepted = []
        for trick in RELAY_TRICKS:
            smtp = smtp_session(app)
            utf8 = " SMTPUTF8" if "SMTPUTF8" in trick else ""
            smtp.docmd(f"MAIL FROM:<a@remote.example>{utf8}")
            if command(smtp, "RCPT TO:" + trick)[0] == 250:
                accepted.append(trick)
                assert smtp.docmd("DATA")[0] == 354
                assert smtp.docmd("Subject: t\r\n\r\nx\r\n.")[0] == 250
            smtp.quit()
        assert app.call(app.runtime.store.list_queue()) == []
        assert len(app.inbox_messages(USER)) == len(accepted)


SMUGGLED = (b"MAIL FROM:<evil@remote.example>\r\nRCPT TO:<other@example.test>\r\n"
            b"DATA\r\nSubject: smuggled\r\n\r\nevil\r\n.\r\n")


@pytest.mark.parametrize("fake_end", [
    b"\n.\n", b"\r\n.\n", b"\n.\r\n", b"\r.\r", b"\r\n.\r", b"\n.\r", b"\r.\n", b"\r.\r\n",
    b"\r\n.\r\r\n", b"\r\n\x00.\r\n", b"\r\n.\x00\r\n", b"\r\n .\r\n",
])
@pytest.mark.parametrize("bare_newline", ["normalize", "reject"])
def test_smtp_smuggling_variants(start_app: StartApp, fake_end: bytes, bare_newline: str
                                 ) -> None:
    """End of data is only <CRLF>.<CRLF> (RFC 5321 §4.1.1.4). A bare CR taints the message
    (refused with 521); a lone LF too under SMTPD_FORBID_BARE_NEWLINE=reject, while
    `normalize` (Postfix 3.9's default) reads it as CRLF. Either way the smuggled second
    message is never delivered."""
    with start_app(SMTPD_FORBID_BARE_NEWLINE=bare_newline) as app:
        app.call(app.runtime.accounts.add_account(OTHER, PASSWORD))
        sock = connect(app.port("smtp"))
        assert read_line(sock).startswith(b"220 ")
        sock.sendall(b"EHLO client.example\r\n")
        while not read_line(sock).startswith(b"250 "):
            pass
        sock.sendall(b"MAIL FROM:<a@remote.example>\r\nRCPT TO:<user@example.test>\r\nDATA\r\n")
        assert [read_line(sock)[:3] for _ in range(3)] == [b"250", b"250", b"354"]
        sock.sendall(b"Subject: first\r\n\r\nbody" + fake_end + SMUGGLED)
        reply = read_line(sock)
        lone = fake_end.replace(b"\r\n", b"")
        is_tainted = b"\r" in lone or (b"\n" in lone and bare_newline == "reject")
        if is_tainted:
            assert reply.startswith(b"521 5.5.2 "), reply
            assert is_closed(sock)
            assert app.inbox_messages(USER) == []
        else:
            assert reply.startswith(b"250 2.0.0 Ok: queued as"), reply
            (stored,) = app.inbox_messages(USER)  # one message, smuggled text inside it
            assert b"MAIL FROM:<evil@remote.example>" in stored
        sock.close()
        assert app.inbox_messages(OTHER) == []


def nested_multipart(depth: int) -> bytes:
    head = b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (n, n)
                    for n in range(depth))
    tail = b"".join(b"\r\n--b%d--\r\n" % n for n in reversed(range(depth)))
    leaf = b"Content-Type: text/plain\r\n\r\nx"
    return b"Subject: deep\r\nMIME-Version: 1.0\r\n" + head + leaf + tail


def nested_rfc822(depth: int) -> bytes:
    body = b"Subject: inner\r\n\r\nx\r\n"
    for _ in range(depth):
        body = b"Subject: wrap\r\nContent-Type: message/rfc822\r\n\r\n" + body
    return body


HOSTILE = {
    "deep-multipart": nested_multipart(2000),
    "deep-rfc822": nested_rfc822(2000),
    "many-parts": b'Subject: parts\r\nContent-Type: multipart/mixed; boundary="p"\r\n\r\n'
                  + b"--p\r\nContent-Type: text/plain\r\n\r\nx\r\n" * 20000 + b"--p--\r\n",
    "broken-base64": b"Subject: b64\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                     b"!!!!not*base64====\r\nQUJD\r\n=\r\n",
    "broken-qp": b"Subject: qp\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=ZZ=\r\n=",
    "unterminated-multipart": b'Subject: u\r\nContent-Type: multipart/mixed; boundary="z"\r\n'
                              b"\r\n--z\r\nContent-Type: text/plain\r\n\r\nno end",
    "empty-boundary": b'Subject: e\r\nContent-Type: multipart/mixed; boundary=""\r\n\r\n--\r\n',
    "bad-encoded-words": b"Subject: =?utf-8?B?!!!?= =?x-unknown?Q?a?= =?utf-8?Q?=FF?=\r\n"
                         b"From: =?utf-8?b?\xff\xfe?= <a@b>\r\n\r\nx\r\n",
    "eight-bit-garbage": b"Subject: \xff\xfe\x80\r\nX: \x00\x01\r\n\r\n\xff" * 3,
    "huge-params": b"Subject: p\r\nContent-Type: text/plain; "
                   + b"; ".join(b"a%d*%d=x" % (n, n) for n in range(3000)) + b"\r\n\r\nx\r\n",
    "long-line-body": b"Subject: l\r\n\r\n" + b"y" * 900_000 + b"\r\n",
}


def test_hostile_mime_never_crashes_a_session(start_app: StartApp, client_tls: ssl.SSLContext,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(poplib, "_MAXLINE", 2_000_000)  # the client's limit, not ours
    with start_app() as app:
        with smtplib.SMTP("127.0.0.1", app.port("smtp"), timeout=60) as smtp:
            for name, raw in HOSTILE.items():
                assert smtp.sendmail("a@remote.example", [USER], raw) == {}, name
                assert smtp.noop()[0] == 250, name
        stored = app.inbox_messages(USER)
        assert len(stored) == len(HOSTILE)
        pop = poplib.POP3_SSL("127.0.0.1", app.port("pop3s"), context=client_tls, timeout=60)
        pop.user(USER)
        pop.pass_(PASSWORD)
        for number in range(1, len(HOSTILE) + 1):
            assert pop.retr(number)[0].startswith(b"+OK")
        pop.quit()
        imap = imaplib.IMAP4_SSL("127.0.0.1", app.port("imaps"), ssl_context=client_tls,
                                 timeout=60)
        imap.login(USER, PASSWORD)
        imap.select("INBOX", readonly=True)
        for item in ("BODYSTRUCTURE", "ENVELOPE", "BODY.PEEK[1]", "BODY.PEEK[HEADER]"):
            status, _ = imap.fetch(f"1:{len(HOSTILE)}", f"({item})")
            assert status == "OK", item
        imap.logout()
