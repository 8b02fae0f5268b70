"""Self-service in a real browser (issue 21, "Done when"): headless Debian chromium
through selenium against a real App over HTTPS. A user turns on TOTP and logs in with it
(codes computed with pyotp; a replayed code is refused, a recovery code works), creates
an app password and logs in over IMAP with it, revokes it (IMAP then refuses it), and
sets a vacation reply that an SMTP delivery then answers (the reply arrives at a loopback
SMTP sink). Screenshots of the self-service pages go to test-output/screenshots/."""

from __future__ import annotations

import datetime as dt
import imaplib
import ssl

import pyotp
import pytest

from tests.support.server import AppThread
from tests.web.browser import Browser
from tests.web.conftest import PASSWORD, USER
from tests.web.mailsink import OUTSIDE, Sink, mail_app, send_from_outside, wait_for
from tests.web.test_selfservice import RECOVERY

__all__ = ["mail_app"]  # the fixture (`sink` comes from tests/conftest.py)

pytestmark = pytest.mark.timeout(240)


def imap_login(app: AppThread, tls: ssl.SSLContext, password: str) -> bool:
    imap = imaplib.IMAP4_SSL("127.0.0.1", app.port("imaps"), ssl_context=tls, timeout=30)
    try:
        imap.login(USER, password)
    except imaplib.IMAP4.error:
        return False
    finally:
        imap.shutdown()
    return True


def enrol(web: Browser) -> tuple[pyotp.TOTP, int, list[str]]:
    web.open("/me/2fa")
    web.screenshot("me-2fa-off")
    web.submit("#start-2fa button")
    totp = pyotp.TOTP(web.find("#totp-secret").text)
    assert web.find("#totp-uri").text.startswith("otpauth://totp/")
    assert web.finds("#totp-qr svg path")  # the QR code, drawn under the strict CSP
    web.screenshot("me-2fa-enrol")
    step = totp.timecode(dt.datetime.now(dt.UTC))
    web.fill({"code": totp.generate_otp(step)})
    web.submit("#confirm-2fa button")
    codes = RECOVERY.findall(web.find("#recovery-codes pre").text)
    assert len(codes) == 10
    web.screenshot("me-2fa-recovery-codes")
    return totp, step, codes


def log_in_with_code(web: Browser, code: str) -> None:
    web.login(USER, PASSWORD)
    assert web.path.startswith("/login/totp")
    web.fill({"code": code})
    web.submit()


def test_user_self_service_in_a_browser(mail_app: AppThread, browser: Browser,
                                        sink: tuple[Sink, int],
                                        client_tls: ssl.SSLContext) -> None:
    web = browser.use(mail_app)
    web.login(USER, PASSWORD)
    totp, step, codes = enrol(web)
    web.submit("header form.logout button[type=submit]")

    log_in_with_code(web, totp.generate_otp(step + 1))
    assert web.path == "/me", web.text()
    web.screenshot("me-overview")
    web.submit("header form.logout button[type=submit]")
    log_in_with_code(web, totp.generate_otp(step + 1))  # the same code again
    assert web.path.startswith("/login/totp") and "not right" in web.text()
    web.screenshot("login-totp-replayed")
    web.fill({"code": codes[0]})
    web.submit()
    assert web.path == "/me"

    web.open("/me/app-passwords")
    web.fill({"name": "Phone"})
    web.submit("#create-app-password button")
    password = web.find("#app-password-value").text
    web.screenshot("me-app-passwords")
    assert imap_login(mail_app, client_tls, password)
    web.open("/me/app-passwords")
    web.submit("#app-passwords td.actions button")
    assert "revoked" in web.find(".flash").text
    assert not imap_login(mail_app, client_tls, password)

    web.open("/me/vacation")
    web.find("#vacation-on").click()
    web.fill({"subject": "Out of office", "text": "Back next week."})
    web.submit("#vacation button[type=submit]")
    assert "vacation reply is on" in web.find(".flash").text
    web.screenshot("me-vacation")
    send_from_outside(mail_app, "are you there")
    wait_for(lambda: any(rcpts == [OUTSIDE] for _, rcpts, _ in sink[0].received))
    (reply,) = [raw for _, rcpts, raw in sink[0].received if rcpts == [OUTSIDE]]
    assert b"Subject: Out of office" in reply and b"Back next week." in reply

    for page, name in (("/me/forwarding", "me-forwarding"), ("/me/junk", "me-junk"),
                       ("/me/logins", "me-logins")):
        web.open(page)
        web.screenshot(name)
    assert "app password Phone" in web.find("#logins").text
