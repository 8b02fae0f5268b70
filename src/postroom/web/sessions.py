"""Who is logged in: server-side sessions (store role WebStore) behind a `__Host-` cookie.

Owns the session cookie, `WebUser`, the per-request session load (`SessionLoader`, an
ASGI middleware application.py installs), `current_user`, the `require_*` guards and the
session life cycle (`start_session`, `finish_second_factor`, `end_session`,
`end_other_sessions`). auth.py re-exports the names pages use.

Invariants:
- The cookie holds a random 256-bit token; the store holds only its SHA-256, so a
  database copy logs no one in. Cookie flags: `Secure; HttpOnly; SameSite=Strict;
  Path=/` and the `__Host-` prefix (RFC 6265bis §4.1.3.2: no Domain, set over HTTPS).
- A session lasts WEB_SESSION_LIFETIME; logout deletes it; a password change ends the
  account's other sessions (`end_other_sessions`), so does deleting the account.
- A session whose second factor is pending authorises nothing but the second-factor
  page (`pending_address`), and only for SECOND_FACTOR_WINDOW.
- Re-authentication (`require_recent_auth`) means the password given within
  RECENT_AUTH seconds on this session.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from postroom.store.web_api import WebSession
from postroom.web.forms import SESSION_TOKEN_KEY

if TYPE_CHECKING:
    from postroom.web.context import WebContext

SESSION_COOKIE = "__Host-postroom-session"
RECENT_AUTH = 300  # seconds: re-authentication for password and 2FA changes
SECOND_FACTOR_WINDOW = 300  # seconds to give the second factor after the password
_SESSION_KEY = "postroom.session"
_USER_KEY = "postroom.user"


class RedirectTo(Exception):
    """Raised by a handler (or a `require_*` guard): answer 303 See Other to `url`,
    with an optional flash message."""

    def __init__(self, url: str, message: str = "", kind: str = "info") -> None:
        super().__init__(url)
        self.url, self.message, self.kind = url, message, kind


@dataclass(frozen=True, slots=True)
class WebUser:
    address: str
    is_admin: bool


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SessionLoader:
    """ASGI middleware: reads the session cookie once per request and puts the session
    and its user into the scope, so `current_user` and the guards are plain functions."""

    def __init__(self, app: ASGIApp, ctx: WebContext) -> None:
        self.app, self.ctx = app, ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith("/static/"):
            await self._load(scope)
        await self.app(scope, receive, send)

    async def _load(self, scope: Scope) -> None:
        token = Request(scope).cookies.get(SESSION_COOKIE, "")
        if not 32 <= len(token) <= 64:
            return
        store = self.ctx.runtime.store
        session = await store.web_session(token_hash(token), self.ctx.clock.now())
        if session is None:
            return
        scope[_SESSION_KEY] = session
        scope[SESSION_TOKEN_KEY] = token
        if not session.second_factor_pending:
            scope[_USER_KEY] = WebUser(session.address, await store.is_admin(session.address))


def current_user(request: Request) -> WebUser | None:
    """The logged-in user of this request (second factor done), else None."""
    user: WebUser | None = request.scope.get(_USER_KEY)
    return user


def current_session(request: Request) -> WebSession | None:
    """This request's session, a half-done (second factor pending) one included."""
    session: WebSession | None = request.scope.get(_SESSION_KEY)
    return session


def require_user(request: Request) -> WebUser:
    """The logged-in user; otherwise a redirect to /login that comes back here."""
    user = current_user(request)
    if user is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise RedirectTo("/login?" + _query(next=target))
    return user


def require_admin(request: Request) -> WebUser:
    """The logged-in admin; a redirect to /login when logged out, 403 for non-admins."""
    user = require_user(request)
    if not user.is_admin:
        raise HTTPException(403, "This page is for administrators.")
    return user


def require_recent_auth(request: Request) -> WebUser:
    """The logged-in user who gave the password within RECENT_AUTH seconds on this
    session; otherwise a redirect to /reauth that comes back to this page (call it in
    the GET of a password or 2FA page as well as in its POST)."""
    user = require_user(request)
    session = current_session(request)
    now = dt.datetime.now(dt.UTC)
    if session is None or (now - session.authenticated).total_seconds() > RECENT_AUTH:
        raise RedirectTo("/reauth?" + _query(next=request.url.path),
                         "Please confirm your password to continue.")
    return user


def pending_address(request: Request) -> str | None:
    """The address whose password was right but whose second factor is still due (the
    /login/totp page's user), within SECOND_FACTOR_WINDOW; else None."""
    session = current_session(request)
    if session is None or not session.second_factor_pending:
        return None
    if (dt.datetime.now(dt.UTC) - session.created).total_seconds() > SECOND_FACTOR_WINDOW:
        return None
    return session.address


async def start_session(ctx: WebContext, response: Response, address: str,
                        client: str | None, *, second_factor_pending: bool = False) -> None:
    """A new session for `address` (password just verified), its cookie set on
    `response`."""
    token = secrets.token_urlsafe(32)
    now = ctx.clock.now()
    lifetime = SECOND_FACTOR_WINDOW if second_factor_pending else ctx.config.web_session_lifetime
    await ctx.runtime.store.add_web_session(WebSession(
        token_hash(token), address, now, now, now + dt.timedelta(seconds=lifetime),
        second_factor_pending, client or ""))
    response.set_cookie(SESSION_COOKIE, token, max_age=lifetime, path="/", secure=True,
                        httponly=True, samesite="strict")


async def finish_second_factor(ctx: WebContext, request: Request, response: Response) -> bool:
    """The second factor was right: the pending session becomes a full one (a fresh
    token, the half-done one deleted). False when there was no pending login."""
    session = current_session(request)
    if session is None or pending_address(request) is None:
        return False
    await ctx.runtime.store.delete_web_session(session.token_hash)
    await start_session(ctx, response, session.address, session.client)
    return True


async def mark_reauthenticated(ctx: WebContext, request: Request) -> None:
    session = current_session(request)
    if session is not None:
        await ctx.runtime.store.update_web_session(
            session.token_hash, ctx.clock.now(), session.expires, False)


async def end_session(ctx: WebContext, request: Request, response: Response) -> None:
    """Logout: the session deleted in the store, the cookie cleared."""
    session = current_session(request)
    if session is not None:
        await ctx.runtime.store.delete_web_session(session.token_hash)
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True,
                           samesite="strict")


async def end_other_sessions(ctx: WebContext, request: Request, address: str) -> int:
    """After a password (or 2FA) change: every other session of `address` ends; this
    request's own session stays. How many ended."""
    session = current_session(request)
    keep = session.token_hash if session is not None and session.address == address else ""
    return await ctx.runtime.store.delete_web_sessions_of(address, keep=keep)


def _query(**values: str) -> str:
    return urllib.parse.urlencode(values)
