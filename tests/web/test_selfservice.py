"""The self-service pages (issue 21) over real sockets: TOTP enrolment and login (codes
from pyotp, a replayed code refused, recovery codes once), the password change, the
vacation reply and forwarding as a Sieve script that real SMTP deliveries run (replies
and forwards arrive at a loopback SMTP sink standing in for the Internet), a user's own
script kept, and the Junk thresholds."""

from __future__ import annotations

import datetime as dt
import html
import re
import ssl

import pyotp
import pytest

from postroom.accounts.mailrules import MANAGED_NAME
from tests.support.server import AppThread
from tests.web.conftest import USER, StartWebApp, WebClient, login
from tests.web.mailsink import OUTSIDE, Sink, mail_app, send_from_outside, wait_for

__all__ = ["mail_app"]  # the fixture (`sink` comes from tests/conftest.py)

SECRET = re.compile(r'<code id="totp-secret">([A-Z2-7]+)</code>')
RECOVERY = re.compile(r"\b([a-z2-9]{5}-[a-z2-9]{5})\b")


def has_mailbox(app: AppThread, name: str) -> bool:
    async def look() -> bool:
        account = await app.runtime.store.get_account(USER)
        assert account is not None
        return await app.runtime.store.get_mailbox(account.id, name) is not None

    return bool(app.call(look()))


def post_page(client: WebClient, path: str, form: dict[str, str],
              page: str | None = None) -> object:
    shown = client.get(page or path)
    assert shown.status == 200, shown.body[:300]
    return client.post(path, {"csrf_token": shown.csrf(), **form})


def enrol(client: WebClient) -> tuple[pyotp.TOTP, int, list[str]]:
    """Turn TOTP on; (the TOTP, the step its confirming code used, recovery codes)."""
    post_page(client, "/me/2fa/start", {}, page="/me/2fa")
    page = client.get("/me/2fa")
    match = SECRET.search(page.body)
    assert match, page.body[:1000]
    totp = pyotp.TOTP(match.group(1))
    step = totp.timecode(dt.datetime.now(dt.UTC))
    answer = client.post("/me/2fa/confirm", {"csrf_token": page.csrf(),
                                             "code": totp.generate_otp(step)})
    assert answer.status == 200 and 'id="recovery-codes"' in answer.body, answer.body[:500]
    codes = RECOVERY.findall(answer.body.split('id="recovery-codes"', 1)[1])
    assert len(codes) == 10
    return totp, step, codes


def totp_login(client: WebClient, code: str) -> int:
    page = client.get("/login/totp")
    assert page.status == 200
    return client.post("/login/totp", {"csrf_token": page.csrf(), "code": code,
                                       "next": "/me"}).status


def test_totp_login_refuses_a_replayed_code_and_spends_recovery_codes(
        web_app: StartWebApp, client_tls: ssl.SSLContext) -> None:
    with web_app() as app:
        client = WebClient(app, client_tls)
        assert login(client, USER).status == 303
        totp, step, codes = enrol(client)
        second = WebClient(app, client_tls)
        answer = login(second, USER)
        assert answer.status == 303 and answer.location.startswith("/login/totp")
        assert second.get("/me").status == 303  # nothing but the code page yet
        assert totp_login(second, totp.generate_otp(step)) == 401  # used to confirm
        assert totp_login(second, totp.generate_otp(step + 1)) == 303
        assert second.get("/me").status == 200
        third = WebClient(app, client_tls)
        login(third, USER)
        assert totp_login(third, totp.generate_otp(step + 1)) == 401  # replayed
        assert totp_login(third, "000000" if totp.generate_otp(step + 1) != "000000"
                          else "111111") == 401
        assert totp_login(third, codes[0].upper()) == 303  # a recovery code, once
        fourth = WebClient(app, client_tls)
        login(fourth, USER)
        assert totp_login(fourth, codes[0]) == 401
        assert "9 recovery code(s) left" in third.get("/me/2fa").body


def test_turning_totp_off(web_app: StartWebApp, client_tls: ssl.SSLContext) -> None:
    with web_app() as app:
        client = WebClient(app, client_tls)
        login(client, USER)
        enrol(client)
        again = post_page(client, "/me/2fa/start", {}, page="/me/2fa")
        assert again.status == 303  # type: ignore[attr-defined]
        assert "turn it off first" in client.get("/me/2fa").body
        answer = post_page(client, "/me/2fa/disable", {}, page="/me/2fa")
        assert answer.status == 303  # type: ignore[attr-defined]
        assert "off" in client.get("/me/2fa").body
        fresh = WebClient(app, client_tls)
        assert login(fresh, USER).location == "/"  # no second step any more


def test_password_change(web_app: StartWebApp, client_tls: ssl.SSLContext) -> None:
    with web_app() as app:
        client = WebClient(app, client_tls)
        login(client, USER)
        short = post_page(client, "/me/password",
                          {"new_password": "short", "confirm_password": "short"})
        assert short.status == 400  # type: ignore[attr-defined]
        differ = post_page(client, "/me/password", {"new_password": "a new passphrase",
                                                    "confirm_password": "another one!"})
        assert differ.status == 400  # type: ignore[attr-defined]
        done = post_page(client, "/me/password", {"new_password": "a new passphrase",
                                                  "confirm_password": "a new passphrase"})
        assert done.status == 303  # type: ignore[attr-defined]
        assert login(WebClient(app, client_tls), USER).status == 401
        assert login(WebClient(app, client_tls), USER, "a new passphrase").status == 303


def test_a_vacation_reply_reaches_the_sender(mail_app: AppThread,
                                             sink: tuple[Sink, int],
                                             client_tls: ssl.SSLContext) -> None:
    client = WebClient(mail_app, client_tls)
    login(client, USER)
    today = dt.date.today()
    answer = post_page(client, "/me/vacation", {
        "is_on": "on", "start": str(today - dt.timedelta(days=1)),
        "end": str(today + dt.timedelta(days=1)), "subject": 'Away "until" Monday',
        "text": "I am away.\nBack on Monday \\o/", "days": "7"})
    assert answer.status == 303  # type: ignore[attr-defined]
    assert 'value="Away &#34;until&#34; Monday"' in client.get("/me/vacation").body
    send_from_outside(mail_app, "first")
    wait_for(lambda: any(OUTSIDE in rcpts for _, rcpts, _ in sink[0].received))
    sender, rcpts, raw = sink[0].received[0]
    assert rcpts == [OUTSIDE] and sender == "<>"  # RFC 5230 §5.1: null sender
    assert b'Subject: Away "until" Monday' in raw and b"Back on Monday \\o/" in raw
    assert len(mail_app.inbox_messages(USER)) == 1  # the message itself is kept
    off = post_page(client, "/me/vacation", {"text": "I am away.", "days": "7"})
    assert off.status == 303  # type: ignore[attr-defined]
    account = mail_app.call(mail_app.runtime.store.get_account(USER))
    assert account is not None
    assert mail_app.call(mail_app.runtime.store.active_sieve_script(account.id)) is None


def test_vacation_outside_its_dates_sends_nothing(mail_app: AppThread,
                                                  sink: tuple[Sink, int],
                                                  client_tls: ssl.SSLContext) -> None:
    client = WebClient(mail_app, client_tls)
    login(client, USER)
    later = dt.date.today() + dt.timedelta(days=10)
    post_page(client, "/me/vacation", {"is_on": "on", "start": str(later),
                                       "text": "Away later.", "days": "1"})
    post_page(client, "/me/forwarding", {"address": "copy@remote.example",
                                         "keep_copy": "on"})
    send_from_outside(mail_app, "before the holiday")
    wait_for(lambda: bool(sink[0].received))  # the forward: the queue has run
    assert [rcpts for _, rcpts, _ in sink[0].received] == [["copy@remote.example"]]
    assert len(mail_app.inbox_messages(USER)) == 1


def test_an_own_script_is_included_not_clobbered(mail_app: AppThread,
                                                 client_tls: ssl.SSLContext) -> None:
    store = mail_app.runtime.store
    account = mail_app.call(store.get_account(USER))
    assert account is not None
    own = 'require ["fileinto", "mailbox"]; fileinto :create "Work";'
    now = dt.datetime.now(dt.UTC)
    mail_app.call(store.put_sieve_script(account.id, "mine", own, now))
    mail_app.call(store.activate_sieve_script(account.id, "mine"))
    client = WebClient(mail_app, client_tls)
    login(client, USER)
    page = client.get("/me/forwarding")
    assert "“mine” is active" in html.unescape(page.body)
    post_page(client, "/me/forwarding", {"address": "copy@remote.example",
                                         "keep_copy": "on"})
    active = mail_app.call(store.active_sieve_script(account.id))
    assert active is not None and active[0] == MANAGED_NAME
    assert 'include :personal :optional "mine";' in active[1]
    assert mail_app.call(store.get_sieve_script(account.id, "mine")) == own
    send_from_outside(mail_app, "for work")
    wait_for(lambda: has_mailbox(mail_app, "Work")
             and len(mail_app.inbox_messages(USER, "Work")) == 1)
    post_page(client, "/me/forwarding", {"address": ""})
    assert mail_app.call(store.active_sieve_script(account.id)) == ("mine", own)
    assert mail_app.call(store.get_sieve_script(account.id, MANAGED_NAME)) is None


@pytest.mark.parametrize(("form", "problem"), [
    ({"is_on": "on", "text": "", "days": "7"}, "write the message"),
    ({"is_on": "on", "text": "x", "days": "99"}, "1 to 30 days"),
    ({"is_on": "on", "text": "x", "days": "7", "start": "tomorrow"}, "2026-12-24"),
    ({"is_on": "on", "text": "x", "days": "7", "start": "2026-12-10",
      "end": "2026-12-01"}, "before the start"),
    ({"is_on": "on", "text": "x" * 5000, "days": "7"}, "at most 4000"),
])
def test_bad_vacation_settings_are_refused_with_the_reason(
        web_app: StartWebApp, client_tls: ssl.SSLContext, form: dict[str, str],
        problem: str) -> None:
    with web_app() as app:
        client = WebClient(app, client_tls)
        login(client, USER)
        answer = post_page(client, "/me/vacation", form)
        assert answer.status == 400 and problem in answer.body  # type: ignore[attr-defined]


def test_forwarding_refuses_bad_addresses(web_app: StartWebApp,
                                          client_tls: ssl.SSLContext) -> None:
    with web_app() as app:
        client = WebClient(app, client_tls)
        login(client, USER)
        for address in ("not an address", USER, 'x"@y.example'):
            answer = post_page(client, "/me/forwarding", {"address": address})
            assert answer.status == 400  # type: ignore[attr-defined]


def test_junk_thresholds(web_app: StartWebApp, client_tls: ssl.SSLContext) -> None:
    with web_app() as app:
        client = WebClient(app, client_tls)
        login(client, USER)
        store = app.runtime.store
        account = app.call(store.get_account(USER))
        assert account is not None
        unordered = post_page(client, "/me/junk", {"tag": "5", "tag2": "3", "kill": ""})
        assert unordered.status == 400  # type: ignore[attr-defined]
        for bad in ("nan", "1e9", "six"):
            answer = post_page(client, "/me/junk", {"tag": bad, "tag2": "", "kill": ""})
            assert answer.status == 400  # type: ignore[attr-defined]
        saved = post_page(client, "/me/junk", {"tag": "1.5", "tag2": "", "kill": "20"})
        assert saved.status == 303  # type: ignore[attr-defined]
        thresholds = app.call(store.get_spam_thresholds(account.id))
        assert thresholds is not None
        assert (thresholds.tag, thresholds.tag2, thresholds.kill) == (1.5, None, 20.0)
        post_page(client, "/me/junk", {"reset": "1"})
        assert app.call(store.get_spam_thresholds(account.id)) is None
