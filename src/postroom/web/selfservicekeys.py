"""App passwords and the TOTP second factor on the self-service pages (issue 21).

Owns /me/app-passwords (create: the password is shown once, on the answer to the POST,
never stored in clear nor put in a URL or flash cookie; list; revoke) and /me/2fa
(enrol: a new secret shown as text, as an otpauth:// URI and as its QR code (segno),
confirmed with a code;
recovery codes shown once; new recovery codes; turning the factor off).

Invariants: every page here needs a recent password (`require_recent_auth`, in GET and
POST); revoking works on the session user's own rows only; turning 2FA on or off ends
the account's other web sessions.
"""

from __future__ import annotations

import segno
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from postroom.accounts.apppasswords import MAX_NAME_LENGTH, MAX_PER_ACCOUNT
from postroom.accounts.totp import provisioning_uri
from postroom.errors import BadSyntax, Refused
from postroom.store.api import Account
from postroom.web.context import context
from postroom.web.forms import checked_form
from postroom.web.render import redirect, render
from postroom.web.selfservicekit import SECTIONS, account_of, form_text, shown_time
from postroom.web.sessions import end_other_sessions, require_recent_auth
from postroom.web.twofactor import two_factor

ISSUER = "postroom"


def routes() -> list[BaseRoute]:
    return [Route("/me/app-passwords", apps_page, methods=["GET"]),
            Route("/me/app-passwords", create_app_password, methods=["POST"]),
            Route("/me/app-passwords/revoke", revoke_app_password, methods=["POST"]),
            Route("/me/2fa", totp_page, methods=["GET"]),
            Route("/me/2fa/start", start_totp, methods=["POST"]),
            Route("/me/2fa/confirm", confirm_totp, methods=["POST"]),
            Route("/me/2fa/recovery", renew_recovery_codes, methods=["POST"]),
            Route("/me/2fa/disable", disable_totp, methods=["POST"])]


# -- app passwords -------------------------------------------------------------------
async def apps_page(request: Request) -> Response:
    account = await account_of(request, require_recent_auth(request))
    return await _apps(request, account)


async def _apps(request: Request, account: Account, status: int = 200,
                **values: object) -> Response:
    ctx = context(request)
    rows = await ctx.runtime.accounts.list_app_passwords(account)
    listed = [{"id": row.id, "name": row.name, "created": shown_time(ctx, row.created),
               "last_used": shown_time(ctx, row.last_used)} for row in rows]
    return render(request, "me_app_passwords.html", status, sections=SECTIONS,
                  section="apps", passwords=listed, maximum=MAX_PER_ACCOUNT,
                  max_name=MAX_NAME_LENGTH, address=account.address, **values)


async def create_app_password(request: Request) -> Response:
    account = await account_of(request, require_recent_auth(request))
    form = await checked_form(request)
    name = form_text(form.get("name"), MAX_NAME_LENGTH)
    try:
        row, password = await context(request).runtime.accounts.add_app_password(account, name)
    except (BadSyntax, Refused) as failure:
        return await _apps(request, account, 400, error=str(failure))
    return await _apps(request, account, new_name=row.name, new_password=password)


async def revoke_app_password(request: Request) -> Response:
    account = await account_of(request, require_recent_auth(request))
    form = await checked_form(request)
    raw = form_text(form.get("id"), 20)
    if not raw.isdigit():
        return redirect("/me/app-passwords", "No such app password.", "error")
    try:
        await context(request).runtime.accounts.revoke_app_password(account, int(raw))
    except Refused:
        return redirect("/me/app-passwords", "No such app password.", "error")
    return redirect("/me/app-passwords", "The app password was revoked: it no longer works.")


# -- two-factor ------------------------------------------------------------------------
async def totp_page(request: Request) -> Response:
    account = await account_of(request, require_recent_auth(request))
    return await _totp(request, account)


async def _totp(request: Request, account: Account, status: int = 200,
                **values: object) -> Response:
    factor = two_factor(context(request))
    pending = await factor.pending_secret(account.id)
    uri = provisioning_uri(pending, account.address, ISSUER) if pending else ""
    return render(request, "me_2fa.html", status, sections=SECTIONS, section="2fa",
                  is_enabled=await factor.is_enabled(account.id),
                  codes_left=await factor.recovery_codes_left(account.id),
                  secret=pending or "",
                  uri=uri, qr=_qr_svg(uri) if uri else "", **values)


def _qr_svg(uri: str) -> Markup:
    """The otpauth URI as a QR code in inline SVG: segno writes only path data and
    dimensions (no text of ours, no script), so it is safe unescaped and needs no inline
    style the CSP would refuse."""
    svg = segno.make(uri, error="m").svg_inline(scale=4, light="#fff",
                                                title="Two-factor setup code")
    return Markup(svg)  # noqa: S704 — segno's own markup (docstring)


async def start_totp(request: Request) -> Response:
    account = await account_of(request, require_recent_auth(request))
    await checked_form(request)
    factor = two_factor(context(request))
    if await factor.is_enabled(account.id):  # a new secret would end the one in force
        return redirect("/me/2fa", "Two-factor login is on already; turn it off first.",
                        "error")
    await factor.begin(account.id)
    return redirect("/me/2fa")


async def confirm_totp(request: Request) -> Response:
    user = require_recent_auth(request)
    account = await account_of(request, user)
    form = await checked_form(request)
    code = form_text(form.get("code"), 64)
    ctx = context(request)
    try:
        codes = await two_factor(ctx).confirm(account.id, code)
    except Refused as failure:
        return await _totp(request, account, 400, error=str(failure))
    await end_other_sessions(ctx, request, user.address)
    return await _totp(request, account, recovery_codes=codes,
                       message="Two-factor login is on.")


async def renew_recovery_codes(request: Request) -> Response:
    account = await account_of(request, require_recent_auth(request))
    await checked_form(request)
    factor = two_factor(context(request))
    if not await factor.is_enabled(account.id):
        return redirect("/me/2fa", "Two-factor login is off.", "error")
    codes = await factor.new_recovery_codes(account.id)
    return await _totp(request, account, recovery_codes=codes,
                       message="New recovery codes: the old ones no longer work.")


async def disable_totp(request: Request) -> Response:
    user = require_recent_auth(request)
    account = await account_of(request, user)
    await checked_form(request)
    ctx = context(request)
    await two_factor(ctx).disable(account.id)
    await end_other_sessions(ctx, request, user.address)
    return redirect("/me/2fa", "Two-factor login is off.")
