"""The second factor of the web login (issue 21): TOTP (RFC 6238) or a recovery code,
asked at /login/totp after the password (accounts/totp.py does the checking).

Owns `needs_second_factor` (auth.py's login asks it after the password was right),
`two_factor(ctx)` (the process's one `TwoFactor`, so its per-account failure budget is
shared by every request) and the /login/totp page.

Invariants: the page serves only a session whose password step is done and whose
second factor is due (`pending_address`, within its window); a right code turns it into
a full session with a fresh token (sessions.finish_second_factor); a wrong, replayed or
throttled code is one answer ("wrong code"), counted by the login guard like a wrong
password, so bans hold here too.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from postroom.accounts.totp import TwoFactor
from postroom.security.peer import CLIENT_ADDRESS
from postroom.web.clients import client_key
from postroom.web.context import WebContext, context
from postroom.web.forms import checked_form
from postroom.web.render import redirect, render, safe_next
from postroom.web.sessions import finish_second_factor, pending_address

MAX_CODE = 64
WRONG_CODE = "That code is not right (each code works once)."


def two_factor(ctx: WebContext) -> TwoFactor:
    if ctx.two_factor is None:
        ctx.two_factor = TwoFactor(ctx.runtime.store, ctx.guard, ctx.clock)
    return ctx.two_factor


async def needs_second_factor(ctx: WebContext, address: str) -> bool:
    """True when `address` has TOTP in force: the session starts half done and the
    login continues at /login/totp."""
    account = await ctx.runtime.store.get_account(address)
    return account is not None and await two_factor(ctx).is_enabled(account.id)


def routes() -> list[BaseRoute]:
    return [Route("/login/totp", totp_page, methods=["GET"]),
            Route("/login/totp", totp_login, methods=["POST"])]


async def totp_page(request: Request) -> Response:
    if pending_address(request) is None:
        return redirect("/login", "Log in again, please: the login took too long.", "error")
    return render(request, "login_totp.html",
                  next=safe_next(request.query_params.get("next")))


async def totp_login(request: Request) -> Response:
    form = await checked_form(request)
    target = safe_next(str(form.get("next", "")))
    address = pending_address(request)
    if address is None:
        return redirect("/login", "Log in again, please: the login took too long.", "error")
    code = str(form.get("code", "")).strip()[:MAX_CODE]
    ctx = context(request)
    account = await ctx.runtime.store.get_account(address)
    if account is None or not code or not await _verified(request, ctx, account.id, code):
        return render(request, "login_totp.html", 401, error=WRONG_CODE, next=target)
    response = redirect(target)
    if not await finish_second_factor(ctx, request, response):
        return redirect("/login", "Log in again, please.", "error")
    return response


async def _verified(request: Request, ctx: WebContext, account_id: int, code: str) -> bool:
    """The code checked as this request's client (the guard's bans and failure delay)."""
    token = CLIENT_ADDRESS.set(client_key(request))
    try:
        return await two_factor(ctx).verify(account_id, code)
    finally:
        CLIENT_ADDRESS.reset(token)
