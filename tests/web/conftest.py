"""Web console test helpers (issue 21): a whole App with WEB_PORT on 127.0.0.1 (tests/support
AppThread) and an HTTPS client over http.client that keeps cookies like a browser.

`web_app(**overrides)` starts an App with an admin (ADMIN) and a user (USER) account;
`WebClient(app, client_tls)` talks to its web port; `login(client, address, password)`
logs in through the real form (CSRF token read from the page). The browser fixture
(selenium + Debian's chromium) is in browser.py.
"""

from __future__ import annotations

import errno
import http.client
import re
import socket
import ssl
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from http.cookies import SimpleCookie
from pathlib import Path

import pytest

from postroom.config import Config
from tests.conftest import make_config
from tests.support.server import NO_DNS_CHECKS, AppThread
from tests.web.browser import browser  # noqa: F401  (the browser fixture, for every test here)

ADMIN = "admin@example.test"
USER = "user@example.test"
PASSWORD = "correct horse battery"
CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')

StartWebApp = Callable[..., AbstractContextManager[AppThread]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def web_app(tmp_path: Path, server_cert: tuple[Path, Path]) -> StartWebApp:
    """`with web_app(KEY=value, …) as app:` — an App serving the web console, with the
    accounts ADMIN (admin role) and USER, both with PASSWORD."""

    @contextmanager
    def start(**overrides: object) -> Iterator[AppThread]:
        values: dict[str, object] = {"AUTH_FAILURE_DELAY": 0, **NO_DNS_CHECKS, **overrides}
        with started(lambda port: make_config(tmp_path, server_cert, WEB_PORT=port,
                                              **values)) as app:
            app.add_account(ADMIN, PASSWORD)
            app.add_account(USER, PASSWORD)
            assert app.call(app.runtime.store.set_admin(ADMIN, True))
            yield app

    return start


@contextmanager
def started(make: Callable[[int], Config], attempts: int = 5) -> Iterator[AppThread]:
    """An AppThread on a free WEB_PORT (WEB_PORT=0 means "off", so a port is picked
    here; another process may take it before the App binds it: then another one)."""
    for attempt in range(attempts):
        app = AppThread(make(free_port()))
        try:
            app.__enter__()
        except OSError as error:
            app.loop.call_soon_threadsafe(app.loop.stop)
            if error.errno != errno.EADDRINUSE or attempt == attempts - 1:
                raise
            continue
        try:
            yield app
        finally:
            app.stop()
        return


class Answer:
    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.status = response.status
        self.headers = response.headers
        self.body = response.read().decode("utf-8", "replace")

    @property
    def location(self) -> str:
        return self.headers.get("Location", "")

    def csrf(self) -> str:
        match = CSRF_INPUT.search(self.body)
        assert match, self.body[:500]
        return match.group(1)


class WebClient:
    """HTTPS/1.1 to the App's web port, keeping cookies (a cookie jar of one host)."""

    def __init__(self, app: AppThread, tls: ssl.SSLContext,
                 headers: dict[str, str] | None = None) -> None:
        self.port = app.port("web")
        self.tls = tls
        self.cookies: dict[str, str] = {}
        self.set_cookie_headers: list[str] = []
        self.extra = headers or {}

    def request(self, method: str, path: str, form: dict[str, str] | None = None,
                headers: dict[str, str] | None = None) -> Answer:
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.tls,
                                           timeout=30)
        sent = {**self.extra, **(headers or {})}
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            conn.request(method, path, body=body, headers=sent)
            answer = Answer(conn.getresponse())
        finally:
            conn.close()
        for header in answer.headers.get_all("Set-Cookie") or []:
            self.set_cookie_headers.append(header)
            for name, morsel in SimpleCookie(header).items():
                if morsel["max-age"] == "0" or morsel["expires"].startswith("Thu, 01 Jan 1970"):
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        return answer

    def get(self, path: str, **kwargs: object) -> Answer:
        return self.request("GET", path, **kwargs)  # type: ignore[arg-type]

    def post(self, path: str, form: dict[str, str], **kwargs: object) -> Answer:
        return self.request("POST", path, form, **kwargs)  # type: ignore[arg-type]


def login(client: WebClient, address: str, password: str = PASSWORD) -> Answer:
    """Log in through the form; the answer to the POST (303 on success)."""
    page = client.get("/login")
    return client.post("/login", {"csrf_token": page.csrf(), "address": address,
                                  "password": password, "next": "/"})
