"""The whole App (app.py wiring): port 25 verifies senders through DNS_NAMESERVERS and
submission enforces SPOOF_PROTECTION, with smtplib as the client."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TEST_HOSTNAME, make_config
from tests.support.dnsserver import DnsTestServer
from tests.support.server import AppThread

ZONE = """$TTL 60
good.test.          TXT "v=spf1 ip4:127.0.0.1 -all"
_dmarc.good.test.   TXT "v=DMARC1; p=reject"
forged.test.        TXT "v=spf1 ip4:192.0.2.1 -all"
"""


@pytest.fixture
def app(tmp_path: Path, server_cert: tuple[Path, Path]) -> Iterator[AppThread]:
    with DnsTestServer(ZONE) as dns, AppThread(make_config(
            tmp_path, server_cert, DNS_NAMESERVERS=dns.address,
            ENABLE_IMAP=0, ENABLE_POP3=0)) as running:
        running.add_account("user@example.test", "pw")
        running.add_account("other@example.test", "pw")
        yield running


def test_port_25_verifies_and_records(app: AppThread) -> None:
    with smtplib.SMTP("127.0.0.1", app.port("smtp"), timeout=10) as smtp:
        smtp.sendmail("a@good.test", ["user@example.test"],
                      b"From: a@good.test\r\nSubject: ok\r\n\r\nhi\r\n")
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            smtp.sendmail("elon@forged.test", ["user@example.test"], b"Subject: x\r\n\r\nx\r\n")
    code, text = refused.value.recipients["user@example.test"]
    assert code == 550 and text == (b"5.7.23 <user@example.test>: Recipient address rejected: "
                                    b"Message rejected due to: SPF fail - not authorized.")
    (stored,) = app.inbox_messages("user@example.test")
    assert (f"Authentication-Results: {TEST_HOSTNAME};\r\n\tspf=pass "
            "smtp.mailfrom=a@good.test;\r\n\tdkim=none;\r\n\tdmarc=pass").encode() in stored


def test_submission_refuses_someone_elses_address(app: AppThread,
                                                  client_tls: ssl.SSLContext) -> None:
    with smtplib.SMTP_SSL("127.0.0.1", app.port("submissions"), context=client_tls,
                          timeout=10) as smtp:
        smtp.login("user@example.test", "pw")
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            smtp.sendmail("other@example.test", ["other@example.test"], b"Subject: x\r\n\r\nx\r\n")
        assert refused.value.smtp_code == 553
        smtp.sendmail("user@example.test", ["other@example.test"],
                      b"From: user@example.test\r\nSubject: mine\r\n\r\nhi\r\n")
    (stored,) = app.inbox_messages("other@example.test")
    assert b"Subject: mine" in stored
