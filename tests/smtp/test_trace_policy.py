"""Trace header rendering (mail/trace.py) and the pure SMTP policy (smtp/policy.py)."""

from __future__ import annotations

import datetime as dt
import ipaddress

import pytest

from postroom.delivery.transit import ClientInfo
from postroom.mail.trace import TraceInfo, render_received, render_return_path
from postroom.smtp import policy
from postroom.smtp.policy import RecipientClass, SessionFacts, SmtpMode

WHEN = dt.datetime(2026, 11, 28, 1, 2, 3, tzinfo=dt.UTC)


def info(**changes: object) -> TraceInfo:
    values: dict[str, object] = dict(client_name="client.example", client_ip="192.0.2.7",
                                     hostname="mx.example.test", protocol="ESMTPS",
                                     queue_id="ABC123", when=WHEN, tls_version="TLSv1.3",
                                     tls_cipher="TLS_AES_256_GCM_SHA384", tls_bits=256,
                                     recipient="u@example.test")
    values.update(changes)
    return TraceInfo(**values)  # type: ignore[arg-type]


def test_received_is_folded_and_complete() -> None:
    raw = render_received(info())
    assert raw.endswith(b"\r\n") and raw.startswith(b"Received: from client.example ")
    lines = raw.decode().split("\r\n")[:-1]
    assert all(len(line) < 78 for line in lines)
    assert all(line.startswith("\t") for line in lines[1:])
    text = " ".join(line.strip() for line in lines)
    assert text == ("Received: from client.example ([192.0.2.7]) (using TLSv1.3 with cipher "
            "TLS_AES_256_GCM_SHA384 (256 bits)) by mx.example.test (postroom) with ESMTPS id "
            "ABC123 for <u@example.test>; Sat, 28 Nov 2026 01:02:03 +0000")


def test_received_sanitizes_client_text_and_ipv6() -> None:
    raw = render_received(info(client_name="evil\r\nBcc: x@y (", client_ip="2001:db8::1",
                               recipient="", tls_version=""))
    assert raw.count(b"\r\n") == raw.count(b"\r\n\t") + 1
    assert b"from evilBcc:x@y" not in raw and b"evilBcc:xy" in raw
    assert b"[IPv6:2001:db8::1]" in raw and b" for <" not in raw


def test_return_path() -> None:
    assert render_return_path("") == b"Return-Path: <>\r\n"
    assert render_return_path("a@b.example") == b"Return-Path: <a@b.example>\r\n"


@pytest.mark.parametrize(("client", "protocol"), [
    (ClientInfo("1.2.3.4", "h", False), "SMTP"),
    (ClientInfo("1.2.3.4", "h", True), "ESMTP"),
    (ClientInfo("1.2.3.4", "h", True, tls_version="TLSv1.3"), "ESMTPS"),
    (ClientInfo("1.2.3.4", "h", True, auth_user="u@x"), "ESMTPA"),
    (ClientInfo("1.2.3.4", "h", True, tls_version="TLSv1.2", auth_user="u@x"), "ESMTPSA"),
])
def test_rfc3848_protocol(client: ClientInfo, protocol: str) -> None:
    assert client.protocol == protocol


def facts(mode: SmtpMode, tls: bool = False, auth: bool = False,
          trusted: bool = False) -> SessionFacts:
    return SessionFacts(mode, tls, auth, trusted)


def test_capabilities_per_mode() -> None:
    mx = policy.capabilities(facts(SmtpMode.MX), 1000)
    assert "STARTTLS" in mx and not any(k.startswith("AUTH") for k in mx)
    assert "SIZE 1000" in mx and "ENHANCEDSTATUSCODES" in mx and "PIPELINING" in mx
    assert "AUTH PLAIN LOGIN" not in policy.capabilities(facts(SmtpMode.SUBMISSION), 1)
    after_tls = policy.capabilities(facts(SmtpMode.SUBMISSION, tls=True), 1)
    assert "AUTH PLAIN LOGIN" in after_tls and "STARTTLS" not in after_tls
    assert "AUTH PLAIN LOGIN" in policy.capabilities(facts(SmtpMode.SUBMISSIONS, tls=True), 1)


def test_auth_and_mail_rules() -> None:
    assert policy.check_auth_allowed(facts(SmtpMode.MX, tls=True)).code == 503  # type: ignore[union-attr]
    assert policy.check_auth_allowed(facts(SmtpMode.SUBMISSION)).code == 530  # type: ignore[union-attr]
    assert policy.check_auth_allowed(facts(SmtpMode.SUBMISSIONS, tls=True)) is None
    assert policy.check_mail_allowed(facts(SmtpMode.MX)) is None
    refusal = policy.check_mail_allowed(facts(SmtpMode.SUBMISSION, tls=True))
    assert refusal is not None and (refusal.code, refusal.status) == (530, "5.7.0")
    assert policy.check_mail_allowed(facts(SmtpMode.SUBMISSION, tls=True, auth=True)) is None
    assert policy.check_size(101, 100).code == 552  # type: ignore[union-attr]
    assert policy.check_size(100, 100) is None and policy.check_size(None, 100) is None


@pytest.mark.parametrize(("cls", "session", "outbound", "code"), [
    (RecipientClass.LOCAL, facts(SmtpMode.MX), False, 250),
    (RecipientClass.UNKNOWN, facts(SmtpMode.MX, auth=True), True, 550),
    (RecipientClass.REMOTE, facts(SmtpMode.MX), True, 554),
    (RecipientClass.REMOTE, facts(SmtpMode.MX, trusted=True), True, 250),
    (RecipientClass.REMOTE, facts(SmtpMode.SUBMISSION, True, auth=True), False, 550),
    (RecipientClass.REMOTE, facts(SmtpMode.SUBMISSION, True, auth=True), True, 250),
    (RecipientClass.FORWARD, facts(SmtpMode.MX), False, 550),
    (RecipientClass.FORWARD, facts(SmtpMode.MX), True, 250),
])
def test_relay_decision(cls: RecipientClass, session: SessionFacts, outbound: bool,
                        code: int) -> None:
    assert policy.decide_recipient(cls, session, outbound, "a@b.example").code == code


def test_trusted_networks() -> None:
    networks = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::/32")]
    assert policy.is_trusted("10.1.2.3", networks)
    assert policy.is_trusted("2001:db8::5", networks)
    assert not policy.is_trusted("192.0.2.1", networks)
    assert not policy.is_trusted("unknown", networks)
