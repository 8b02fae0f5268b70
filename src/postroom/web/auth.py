"""Logging in and out of the web console, and re-authentication (issue 21).

Owns the /login, /logout and /reauth pages, and re-exports the session names every page
uses (sessions.py): `WebUser`, `current_user`, `require_user`, `require_admin`,
`require_recent_auth`, `end_other_sessions`, `pending_address`, `finish_second_factor`.

Login is IMAP's: `AccountService.authenticate` with the client's address key in
`CLIENT_ADDRESS`, so the same password hashes, the same bans (a client banned for
failing here is refused by IMAP too, and the other way round) and the same failure delay
apply. After the password, `twofactor.needs_second_factor` decides whether the session
starts half done (second factor at /login/totp, W3's page) or whole.

Invariants: every POST goes through `checked_form` (CSRF); a failed login never says
whether the address exists; `next` redirects stay on this site (`safe_next`).
"""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from postroom.security.peer import CLIENT_ADDRESS, LISTENER
from postroom.store.api import Account
from postroom.web import twofactor
from postroom.web.clients import client_key
from postroom.web.context import context
from postroom.web.forms import checked_form
from postroom.web.render import redirect, render, safe_next
from postroom.web.sessions import (
    WebUser,
    current_user,
    end_other_sessions,
    end_session,
    finish_second_factor,
    mark_reauthenticated,
    pending_address,
    require_admin,
    require_recent_auth,
    require_user,
    start_session,
)

__all__ = ["WebUser", "current_user", "end_other_sessions", "finish_second_factor",
           "pending_address", "require_admin", "require_recent_auth", "require_user",
           "routes"]

MAX_ADDRESS = 320  # RFC 5321 path limits: local part 64 + @ + domain 255
MAX_PASSWORD = 1024
LOGIN_FAILED = "Wrong address or password."
BANNED = ("Too many failed logins from your address; try again later"
          " (an administrator can lift the ban: postroom ban del ADDRESS).")


def routes() -> list[BaseRoute]:
    return [
        Route("/", home),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/reauth", reauth_page, methods=["GET"]),
        Route("/reauth", reauth, methods=["POST"]),
    ]


async def home(request: Request) -> Response:
    user = current_user(request)
    if user is None:
        return redirect("/login")
    return redirect("/admin" if user.is_admin else "/me")


async def login_page(request: Request) -> Response:
    if current_user(request) is not None:
        return redirect(safe_next(request.query_params.get("next")))
    return render(request, "login.html", next=safe_next(request.query_params.get("next")))


async def login(request: Request) -> Response:
    form = await checked_form(request)
    address = str(form.get("address", "")).strip()[:MAX_ADDRESS]
    password = str(form.get("password", ""))
    target = safe_next(str(form.get("next", "")))
    ctx = context(request)
    key = client_key(request)
    if ctx.guard is not None and key is not None and await ctx.guard.is_banned(key):
        return render(request, "login.html", 403, error=BANNED, address=address, next=target)
    account = await _authenticate(request, address, password)
    if account is None:
        return render(request, "login.html", 401, error=LOGIN_FAILED, address=address,
                      next=target)
    pending = await twofactor.needs_second_factor(ctx, account.address)
    response = redirect("/login/totp?" + urlencode({"next": target}) if pending else target)
    await start_session(ctx, response, account.address, key,
                        second_factor_pending=pending)
    return response


async def logout(request: Request) -> Response:
    await checked_form(request)
    response = redirect("/login", "You are logged out.")
    await end_session(context(request), request, response)
    return response


async def reauth_page(request: Request) -> Response:
    user = require_user(request)
    return render(request, "reauth.html", address=user.address,
                  next=safe_next(request.query_params.get("next")))


async def reauth(request: Request) -> Response:
    user = require_user(request)
    form = await checked_form(request)
    target = safe_next(str(form.get("next", "")))
    account = await _authenticate(request, user.address, str(form.get("password", "")))
    if account is None:
        return render(request, "reauth.html", 401, error="Wrong password.",
                      address=user.address, next=target)
    await mark_reauthenticated(context(request), request)
    return redirect(target)


async def _authenticate(request: Request, address: str, password: str) -> Account | None:
    """AccountService.authenticate as this request's client (bans, failure delay)."""
    if not address or not password or len(password) > MAX_PASSWORD:
        return None
    token = CLIENT_ADDRESS.set(client_key(request))
    listener = LISTENER.set("web")  # the login history's protocol (accounts/logins.py)
    try:
        # The main password only: app passwords are for mail apps (accounts/apppasswords.py).
        return await context(request).runtime.accounts.authenticate(
            address, password, app_passwords=False)
    finally:
        LISTENER.reset(listener)
        CLIENT_ADDRESS.reset(token)
