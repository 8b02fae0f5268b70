"""What the self-service pages (web/selfservice*.py, issue 21) share: the logged-in
user's account row, dates as the user reads them, and the services built per request.

Invariant: every self-service handler acts on the account of the session's user and on
no other — ids in forms (an app password's) are always looked up within that account.
"""

from __future__ import annotations

import datetime as dt

from starlette.exceptions import HTTPException
from starlette.requests import Request

from postroom.accounts.mailrules import MailRulesService
from postroom.accounts.sievescripts import SieveScripts
from postroom.clock import display_zone
from postroom.store.api import Account
from postroom.web.context import WebContext, context
from postroom.web.sessions import WebUser

ME = "/me"
SECTIONS: list[tuple[str, str, str]] = [
    ("overview", "/me", "Overview"), ("password", "/me/password", "Password"),
    ("apps", "/me/app-passwords", "App passwords"), ("tokens", "/me/api-tokens", "API tokens"),
    ("2fa", "/me/2fa", "Two-factor"),
    ("vacation", "/me/vacation", "Vacation reply"), ("forwarding", "/me/forwarding", "Forwarding"),
    ("junk", "/me/junk", "Junk filter"), ("logins", "/me/logins", "Recent logins")]


async def account_of(request: Request, user: WebUser) -> Account:
    """The session user's account (404 when it was deleted meanwhile)."""
    account = await context(request).runtime.store.get_account(user.address)
    if account is None:
        raise HTTPException(404, "Your account no longer exists.")
    return account


def shown_time(ctx: WebContext, when: dt.datetime | None) -> str:
    """A stored (UTC) time in the server's display zone (TZ), to the minute."""
    if when is None:
        return "never"
    return when.astimezone(display_zone(ctx.config.timezone)).strftime("%Y-%m-%d %H:%M %Z")


def mail_rules(ctx: WebContext) -> MailRulesService:
    store = ctx.runtime.store
    return MailRulesService(store, SieveScripts(ctx.config, store))


def form_text(value: object, limit: int) -> str:
    """A text field of a form, at most `limit` characters (longer input is cut, never
    an error page: the field's own check then names the problem)."""
    return str(value if isinstance(value, str) else "")[: limit + 1]
