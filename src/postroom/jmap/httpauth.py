"""Who is asking: the authentication of every JMAP HTTP request (issue 23).

Owns `authenticate(ctx, request)`, which every JMAP route (and the push module, later)
calls first, and `render_auth_failure`. Two schemes, in the Authorization header only:
- `Basic` (RFC 7617): exactly what IMAP LOGIN accepts — `AccountService.authenticate`
  with app passwords allowed and no second factor (TOTP guards the web console alone) —
  so the same hashes, the verified-login cache, the bans and the login history apply;
- `Bearer` (RFC 6750): an API token from the self-service page (accounts/apitokens.py),
  checked through the same login guard, so wrong tokens count towards a ban as wrong
  passwords do.

Invariants:
- Never cookies: the web session (SessionLoader's scope keys) is not read here, so a
  JMAP request carries its credentials itself and needs no CSRF token — nothing ambient
  authorises it. A browser may still replay Basic credentials it was once given, so a
  request whose Origin is another site's is refused (`is_cross_site`): postroom offers
  no CORS, so no page elsewhere may use JMAP here.
- A banned client is refused (403) before any credential is looked at, as the web login
  does; a missing credential is answered 401 without counting a failure (a client's
  first request often has none), a wrong or malformed one counts and waits the guard's
  failure delay.
- Each success goes to the login history as a "jmap" login (LISTENER), so a user sees
  JMAP use beside IMAP's; a bearer login names its token.
"""

from __future__ import annotations

import base64
import binascii
import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from postroom.accounts.apitokens import describe
from postroom.jmap.context import JmapContext
from postroom.jmap.httpanswers import problem
from postroom.metrics import note_login_failure
from postroom.security.peer import CLIENT_ADDRESS, LISTENER
from postroom.store.api import Account
from postroom.store.apitokens_api import ApiToken

LISTENER_NAME = "jmap"  # the login history's protocol (accounts/logins.py)
CHALLENGE = 'Basic realm="postroom", charset="UTF-8", Bearer realm="postroom"'
MAX_CREDENTIAL = 4096  # characters of a decoded Basic credential (head is ≤ 16 KiB anyway)


class AuthFailure(enum.Enum):
    MISSING = "missing"  # no credentials, or a scheme we do not take: 401
    WRONG = "wrong"  # wrong, malformed, revoked, disabled account: one answer, 401
    BANNED = "banned"  # the client is banned (security/bans.py), nothing checked: 403


@dataclass(frozen=True, slots=True)
class Authenticated:
    account: Account
    token: ApiToken | None  # the API token used, None for Basic


async def authenticate(ctx: JmapContext, request: Request) -> Authenticated | AuthFailure:
    """The account this request's Authorization header opens, or why not."""
    scheme, _, value = request.headers.get("authorization", "").strip().partition(" ")
    scheme, value = scheme.lower(), value.strip()
    if scheme not in ("basic", "bearer") or not value:
        return AuthFailure.MISSING
    key = ctx.client_key(request)
    if ctx.guard is not None and key is not None and await ctx.guard.is_banned(key):
        return AuthFailure.BANNED
    client, listener = CLIENT_ADDRESS.set(key), LISTENER.set(LISTENER_NAME)
    try:
        if scheme == "basic":
            account = await _basic(ctx, value)
            return AuthFailure.WRONG if account is None else Authenticated(account, None)
        return await _bearer(ctx, value)
    finally:
        LISTENER.reset(listener)
        CLIENT_ADDRESS.reset(client)


async def _basic(ctx: JmapContext, value: str) -> Account | None:
    """RFC 7617 §2: base64 of "user-id:password", UTF-8 (§2.1's charset we announce).
    A malformed one goes through `authenticate` too, as an empty login: it is counted
    and delayed like any wrong password."""
    username, password = "", ""
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        decoded = ""
    if ":" in decoded and len(decoded) <= MAX_CREDENTIAL:
        username, password = decoded.split(":", 1)
    return await ctx.runtime.accounts.authenticate(username, password)


async def _bearer(ctx: JmapContext, token: str) -> Authenticated | AuthFailure:
    store = ctx.runtime.store

    async def verify() -> Authenticated | None:
        row = await ctx.tokens.verify(token)
        if row is None:
            return None
        account = await store.get_account_by_id(row.account_id)
        if account is None or await store.is_account_disabled(account.id):
            return None
        return Authenticated(account, row)

    found = await (ctx.guard.guarded(verify) if ctx.guard is not None else verify())
    if found is None:
        note_login_failure()
        return AuthFailure.WRONG
    logins = ctx.runtime.accounts.logins
    if logins is not None and found.token is not None:
        logins.record(found.account.id, describe(found.token))
    return found


def is_cross_site(request: Request) -> bool:
    """Does a browser send this request from another site's page? (Origin, RFC 6454,
    compared with the origin the request was addressed to.)"""
    origin = request.headers.get("origin")
    if origin is None:
        return False  # not a browser's cross-origin request: mail clients, scripts
    return origin.lower() != f"https://{request.headers.get('host', '')}".lower()


def render_auth_failure(failure: AuthFailure) -> Response:
    """401 with the challenges (RFC 9110 §11.6.1), or 403 for a banned client."""
    if failure is AuthFailure.BANNED:
        return problem(403, "Too many failed logins from your address; try again later.")
    return problem(401, "Authentication required: Basic (address and password, or an"
                        " app password) or Bearer (an API token).",
                   headers={"WWW-Authenticate": CHALLENGE})


Handler = Callable[[JmapContext, Request, Account], Awaitable[Response]]


def guarded(ctx: JmapContext, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A JMAP route's endpoint: other sites' browsers refused, then authentication, then
    `handler` with the account (every route: API, blobs, session, EventSource)."""

    async def endpoint(request: Request) -> Response:
        if is_cross_site(request):
            return problem(403, "JMAP is not offered to pages of other sites (no CORS).")
        found = await authenticate(ctx, request)
        if isinstance(found, AuthFailure):
            return render_auth_failure(found)
        try:
            return await handler(ctx, request, found.account)
        except ClientDisconnect:  # gone mid-body (an upload's blob was discarded): no one
            return Response(status_code=400)  # reads this; not an error of ours to log

    return endpoint
