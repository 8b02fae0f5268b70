"""The self-service pages every user has (issue 21), under /me: the overview, the
password change and the recent logins here; app passwords and two-factor in
selfservicekeys.py; vacation reply, forwarding and Junk settings in selfservicemail.py.

Owns `routes()` for all of them and the pages of this module.

Invariants: every page starts with `require_user` (and `require_recent_auth` for a
password change, in GET and POST, so /reauth brings the user back to the form); every
POST reads its form with `checked_form`; a password change ends the account's other
web sessions.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from postroom.errors import BadSyntax, Refused
from postroom.web import selfservicekeys, selfservicemail
from postroom.web.context import context
from postroom.web.forms import checked_form
from postroom.web.render import redirect, render
from postroom.web.selfservicekit import SECTIONS, account_of, form_text, mail_rules, shown_time
from postroom.web.sessions import end_other_sessions, require_recent_auth, require_user
from postroom.web.twofactor import two_factor

MIN_WEB_PASSWORD = 8  # what the self-service accepts (the CLI may set shorter ones)
MAX_PASSWORD = 1024
LOGINS_SHOWN = 50


def routes() -> list[BaseRoute]:
    return [Route("/me", overview),
            Route("/me/password", password_page, methods=["GET"]),
            Route("/me/password", change_password, methods=["POST"]),
            Route("/me/logins", logins_page),
            *selfservicekeys.routes(), *selfservicemail.routes()]


async def overview(request: Request) -> Response:
    user = require_user(request)
    account = await account_of(request, user)
    ctx = context(request)
    rules = await mail_rules(ctx).state(account.id)
    apps = await ctx.runtime.accounts.list_app_passwords(account)
    logins = await _recent(request, account.id, 5)
    return render(request, "me_overview.html", sections=SECTIONS, section="overview",
                  has_2fa=await two_factor(ctx).is_enabled(account.id),
                  app_count=len(apps), state=rules, logins=logins)


async def password_page(request: Request) -> Response:
    require_recent_auth(request)
    return render(request, "me_password.html", sections=SECTIONS, section="password",
                  minimum=MIN_WEB_PASSWORD)


async def change_password(request: Request) -> Response:
    user = require_recent_auth(request)
    form = await checked_form(request)
    new = form_text(form.get("new_password"), MAX_PASSWORD)
    again = form_text(form.get("confirm_password"), MAX_PASSWORD)
    error = _password_problem(new, again)
    ctx = context(request)
    if error is None:
        try:
            await ctx.runtime.accounts.update_password(user.address, new)
        except (BadSyntax, Refused) as failure:
            error = str(failure)
    if error is not None:
        return render(request, "me_password.html", 400, sections=SECTIONS,
                      section="password", minimum=MIN_WEB_PASSWORD, error=error)
    ended = await end_other_sessions(ctx, request, user.address)
    note = f" {ended} other session(s) logged out." if ended else ""
    return redirect("/me", "Your password was changed." + note)


def _password_problem(new: str, again: str) -> str | None:
    if len(new) < MIN_WEB_PASSWORD:
        return f"Choose a password of at least {MIN_WEB_PASSWORD} characters."
    if len(new) > MAX_PASSWORD:
        return f"A password has at most {MAX_PASSWORD} characters."
    if new != again:
        return "The two passwords differ."
    return None


async def logins_page(request: Request) -> Response:
    user = require_user(request)
    account = await account_of(request, user)
    return render(request, "me_logins.html", sections=SECTIONS, section="logins",
                  logins=await _recent(request, account.id, LOGINS_SHOWN))


async def _recent(request: Request, account_id: int, limit: int) -> list[dict[str, str]]:
    ctx = context(request)
    history = ctx.runtime.accounts.logins
    if history is None:
        rows = await ctx.runtime.store.recent_logins(account_id, limit)
    else:
        rows = await history.recent(account_id, limit)
    return [{"at": shown_time(ctx, row.at), "protocol": row.protocol,
             "client": row.client or "—", "credential": row.credential} for row in rows]
