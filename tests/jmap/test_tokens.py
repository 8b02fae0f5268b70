"""API tokens (issue 23) over real sockets: made on the self-service page by a logged-in
user (re-authenticated, CSRF-checked), shown once, used as JMAP Bearer credentials,
recorded in the login history, opening nothing else, and dead once revoked."""

from __future__ import annotations

import imaplib
import re
import ssl

import pytest

from postroom.accounts import apitokens
from postroom.accounts.apitokens import ApiTokens
from postroom.errors import Refused
from tests.jmap.httpclient import JmapClient
from tests.support.server import AppThread
from tests.web.conftest import USER, StartWebApp, WebClient, login

NEW_TOKEN = re.compile(r'<pre id="api-token-value">(prt_[A-Za-z0-9_-]+)</pre>')


def create(client: WebClient, name: str) -> str:
    page = client.get("/me/api-tokens")
    assert page.status == 200, page.body[:300]
    answer = client.post("/me/api-tokens", {"csrf_token": page.csrf(), "name": name})
    assert answer.status == 200, answer.body[:500]
    match = NEW_TOKEN.search(answer.body)
    assert match, answer.body[:1000]
    return match.group(1)


def revoke_all(client: WebClient) -> None:
    page = client.get("/me/api-tokens")
    for token_id in re.findall(r'name="id" value="(\d+)"', page.body):
        answer = client.post("/me/api-tokens/revoke", {"csrf_token": page.csrf(),
                                                       "id": token_id})
        assert answer.status == 303


def account_id(app: AppThread) -> int:
    account = app.call(app.runtime.store.get_account(USER))
    assert account is not None
    return account.id


def test_a_token_made_on_the_page_opens_jmap_until_revoked(
        web_app: StartWebApp, client_tls: ssl.SSLContext) -> None:
    with web_app() as app:
        browser = WebClient(app, client_tls)
        assert login(browser, USER).status == 303
        assert "/me/api-tokens" in browser.get("/me").body  # in the navigation
        token = create(browser, "Backup script")
        assert apitokens.is_token_shaped(token)
        bearer = JmapClient(app, client_tls, f"Bearer {token}")
        session = bearer.session()
        assert session.status == 200 and session.json()["username"] == USER
        assert bearer.api([["Core/echo", {"via": "token"}, "0"]]).json()[
            "methodResponses"] == [["Core/echo", {"via": "token"}, "0"]]
        listed = browser.get("/me/api-tokens").body
        assert "Backup script" in listed and token not in listed  # shown once only
        assert "never" not in listed.split("Backup script", 1)[1].split("</tr>", 1)[0]
        (row,) = app.call(app.runtime.store.list_api_tokens(account_id(app)))
        assert row.token_hash == apitokens.token_hash(token) and row.last_used is not None
        logins = app.runtime.accounts.logins
        assert logins is not None
        assert any(r.protocol == "jmap" and r.credential == "API token Backup script"
                   for r in app.call(logins.recent(account_id(app))))
        # JMAP only: not IMAP, not the web console.
        imap = imaplib.IMAP4_SSL("127.0.0.1", app.port("imaps"), ssl_context=client_tls,
                                 timeout=30)
        with pytest.raises(imaplib.IMAP4.error):
            imap.login(USER, token)
        imap.shutdown()
        revoke_all(browser)
        assert bearer.session().status == 401
        assert "No API tokens." in browser.get("/me/api-tokens").body


def test_the_page_needs_a_recent_password_and_a_csrf_token(
        web_app: StartWebApp, client_tls: ssl.SSLContext) -> None:
    with web_app() as app:
        anonymous = WebClient(app, client_tls)
        assert anonymous.get("/me/api-tokens").location.startswith("/login")
        browser = WebClient(app, client_tls)
        login(browser, USER)
        forged = browser.post("/me/api-tokens", {"csrf_token": "x" * 43, "name": "evil"})
        assert forged.status == 403
        assert app.call(app.runtime.store.list_api_tokens(account_id(app))) == []
        empty = browser.post("/me/api-tokens", {"csrf_token": browser.get(
            "/me/api-tokens").csrf(), "name": "  "})
        assert empty.status == 400


def test_tokens_are_capped_named_once_and_die_with_a_disabled_account(
        web_app: StartWebApp, client_tls: ssl.SSLContext) -> None:
    with web_app() as app:
        account = app.call(app.runtime.store.get_account(USER))
        assert account is not None
        tokens = ApiTokens(app.runtime.store)
        _, token = app.call(tokens.create(account, "first"))
        with pytest.raises(Refused, match="already"):
            app.call(tokens.create(account, "first"))
        for n in range(apitokens.MAX_PER_ACCOUNT - 1):
            app.call(tokens.create(account, f"t{n}"))
        with pytest.raises(Refused, match="at most"):
            app.call(tokens.create(account, "one too many"))
        bearer = JmapClient(app, client_tls, f"Bearer {token}")
        assert bearer.session().status == 200
        app.call(app.runtime.accounts.set_disabled(USER, True))
        assert bearer.session().status == 401
