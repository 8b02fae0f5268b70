"""App passwords (issue 21) over real sockets: made on the self-service page, they open
IMAP, POP3 and SMTP submission instead of the main password, are shown once, stop at
once when revoked, never open the web console, and logins show in the history."""

from __future__ import annotations

import imaplib
import poplib
import re
import smtplib
import ssl

import pytest

from postroom.accounts import apppasswords
from tests.support.server import AppThread
from tests.web.conftest import PASSWORD, USER, StartWebApp, WebClient, login

NEW_PASSWORD = re.compile(r'<pre id="app-password-value">([a-z2-9-]+)</pre>')


def create(client: WebClient, name: str) -> str:
    page = client.get("/me/app-passwords")
    assert page.status == 200, page.body[:300]
    answer = client.post("/me/app-passwords", {"csrf_token": page.csrf(), "name": name})
    assert answer.status == 200, answer.body[:500]
    match = NEW_PASSWORD.search(answer.body)
    assert match, answer.body[:1000]
    return match.group(1)


def revoke_all(client: WebClient) -> None:
    page = client.get("/me/app-passwords")
    for password_id in re.findall(r'name="id" value="(\d+)"', page.body):
        answer = client.post("/me/app-passwords/revoke",
                             {"csrf_token": page.csrf(), "id": password_id})
        assert answer.status == 303


def imap_login(app: AppThread, tls: ssl.SSLContext, password: str) -> bool:
    imap = imaplib.IMAP4_SSL("127.0.0.1", app.port("imaps"), ssl_context=tls, timeout=30)
    try:
        imap.login(USER, password)
    except imaplib.IMAP4.error:
        return False
    finally:
        imap.shutdown()
    return True


def test_an_app_password_opens_imap_pop3_and_submission_until_revoked(
        web_app: StartWebApp, client_tls: ssl.SSLContext) -> None:
    with web_app() as app:
        client = WebClient(app, client_tls)
        assert login(client, USER).status == 303
        password = create(client, "Phone")
        assert apppasswords.canonical(password) is not None
        assert imap_login(app, client_tls, password)
        assert imap_login(app, client_tls, password.replace("-", "").upper())  # forgiving
        assert imap_login(app, client_tls, PASSWORD)  # the main password still works
        pop = poplib.POP3_SSL("127.0.0.1", app.port("pop3s"), context=client_tls, timeout=30)
        pop.user(USER)
        assert pop.pass_(password).startswith(b"+OK")
        pop.quit()
        with smtplib.SMTP_SSL("127.0.0.1", app.port("submissions"), context=client_tls,
                              timeout=30) as smtp:
            assert smtp.login(USER, password)[0] == 235
        listed = client.get("/me/app-passwords").body
        assert "Phone" in listed and password not in listed  # shown once only
        revoke_all(client)
        assert not imap_login(app, client_tls, password)
        assert imap_login(app, client_tls, PASSWORD)


def test_an_app_password_does_not_open_the_web_console(
        web_app: StartWebApp, client_tls: ssl.SSLContext) -> None:
    with web_app() as app:
        client = WebClient(app, client_tls)
        login(client, USER)
        password = create(client, "Laptop")
        assert login(WebClient(app, client_tls), USER, password).status == 401


def test_names_and_counts_are_limited(web_app: StartWebApp,
                                      client_tls: ssl.SSLContext) -> None:
    with web_app() as app:
        client = WebClient(app, client_tls)
        login(client, USER)
        create(client, "Phone")
        page = client.get("/me/app-passwords")
        again = client.post("/me/app-passwords", {"csrf_token": page.csrf(), "name": "Phone"})
        assert again.status == 400 and "already" in again.body
        long_name = client.post("/me/app-passwords",
                                {"csrf_token": page.csrf(), "name": "x" * 500})
        assert long_name.status == 400
        assert f"1 to {apppasswords.MAX_NAME_LENGTH} characters" in long_name.body
        for number in range(apppasswords.MAX_PER_ACCOUNT - 1):
            create(client, f"device {number}")
        over = client.post("/me/app-passwords", {"csrf_token": page.csrf(), "name": "more"})
        assert over.status == 400 and f"at most {apppasswords.MAX_PER_ACCOUNT}" in over.body


def test_logins_are_listed_with_protocol_and_app_password(
        web_app: StartWebApp, client_tls: ssl.SSLContext) -> None:
    with web_app() as app:
        client = WebClient(app, client_tls)
        login(client, USER)
        password = create(client, "Tablet")
        assert imap_login(app, client_tls, password)
        page = client.get("/me/logins")
        assert page.status == 200
        rows = re.findall(r"<tr><td>[^<]+</td><td>([^<]+)</td><td>([^<]+)</td>"
                          r"<td>([^<]+)</td></tr>", page.body)
        assert ("imaps", "127.0.0.1", "app password Tablet") in rows
        assert any(credential == "password" for _, _, credential in rows)
        assert "never" not in client.get("/me/app-passwords").body  # last used noted


@pytest.mark.parametrize("path", ["/me", "/me/app-passwords", "/me/2fa", "/me/vacation",
                                  "/me/forwarding", "/me/junk", "/me/logins",
                                  "/me/password"])
def test_self_service_pages_need_a_login(web_app: StartWebApp, client_tls: ssl.SSLContext,
                                         path: str) -> None:
    with web_app() as app:
        answer = WebClient(app, client_tls).get(path)
        assert answer.status == 303 and answer.location.startswith("/login?next=")


def test_names_are_escaped_in_pages(web_app: StartWebApp,
                                    client_tls: ssl.SSLContext) -> None:
    with web_app() as app:
        client = WebClient(app, client_tls)
        login(client, USER)
        create(client, '<img src=x onerror="alert(1)">')
        page = client.get("/me/app-passwords").body
        assert "<img src=x" not in page and "&lt;img src=x onerror=" in page
