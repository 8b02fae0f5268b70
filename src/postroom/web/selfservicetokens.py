"""API tokens on the self-service pages (issue 23): /me/api-tokens.

Owns the page that creates a token (shown once, on the answer to the POST: never stored
in clear, never put in a URL or flash cookie), lists the account's tokens and revokes
them. Tokens are JMAP's bearer credentials (accounts/apitokens.py); the page follows the
app passwords page (selfservicekeys.py).

Invariants: every handler needs a recent password (`require_recent_auth`, in GET and
POST) and reads POSTs through `checked_form` (CSRF); revoking works on the session
user's own tokens only.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from postroom.accounts.apitokens import MAX_NAME_LENGTH, MAX_PER_ACCOUNT, ApiTokens
from postroom.errors import BadSyntax, Refused
from postroom.store.api import Account
from postroom.web.context import WebContext, context
from postroom.web.forms import checked_form
from postroom.web.render import redirect, render
from postroom.web.selfservicekit import SECTIONS, account_of, form_text, shown_time
from postroom.web.sessions import require_recent_auth

PAGE = "/me/api-tokens"


def routes() -> list[BaseRoute]:
    return [Route(PAGE, tokens_page, methods=["GET"]),
            Route(PAGE, create_token, methods=["POST"]),
            Route(PAGE + "/revoke", revoke_token, methods=["POST"])]


def _tokens(ctx: WebContext) -> ApiTokens:
    return ApiTokens(ctx.runtime.store, ctx.clock)


async def tokens_page(request: Request) -> Response:
    account = await account_of(request, require_recent_auth(request))
    return await _page(request, account)


async def _page(request: Request, account: Account, status: int = 200,
                **values: object) -> Response:
    ctx = context(request)
    rows = await _tokens(ctx).list(account)
    listed = [{"id": row.id, "name": row.name, "created": shown_time(ctx, row.created),
               "last_used": shown_time(ctx, row.last_used)} for row in rows]
    return render(request, "me_api_tokens.html", status, sections=SECTIONS,
                  section="tokens", tokens=listed, maximum=MAX_PER_ACCOUNT,
                  max_name=MAX_NAME_LENGTH, address=account.address, **values)


async def create_token(request: Request) -> Response:
    account = await account_of(request, require_recent_auth(request))
    form = await checked_form(request)
    name = form_text(form.get("name"), MAX_NAME_LENGTH)
    try:
        row, token = await _tokens(context(request)).create(account, name)
    except (BadSyntax, Refused) as failure:
        return await _page(request, account, 400, error=str(failure))
    return await _page(request, account, new_name=row.name, new_token=token)


async def revoke_token(request: Request) -> Response:
    account = await account_of(request, require_recent_auth(request))
    form = await checked_form(request)
    raw = form_text(form.get("id"), 20)
    if not raw.isdigit():
        return redirect(PAGE, "No such API token.", "error")
    try:
        await _tokens(context(request)).revoke(account, int(raw))
    except Refused:
        return redirect(PAGE, "No such API token.", "error")
    return redirect(PAGE, "The API token was revoked: it no longer works.")
