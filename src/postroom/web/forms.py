"""CSRF protection of every form (issue 21): the token pages embed, and the one way a
handler reads a POSTed form.

Owns `csrf_token(request)` (Jinja's `csrf_field()` renders it as a hidden input) and
`checked_form(request)`. A logged-in browser's token is derived from its session token
(HMAC-SHA256), so it needs no storage and dies with the session; before login (the login
form itself) it is a random value in a `__Host-` cookie the form must echo (double
submit). Comparisons are constant-time.

Invariant: a POST handler never reads `request.form()` itself — `checked_form` refuses
(403) a form whose token is missing or wrong before the handler sees any field. Session
cookies are SameSite=Strict too; the token is the defence that does not rely on the
browser.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

CSRF_FIELD = "csrf_token"
CSRF_COOKIE = "__Host-postroom-csrf"
SESSION_TOKEN_KEY = "postroom.session_token"  # noqa: S105 — the scope key, not a secret
_NEW_COOKIE_KEY = "postroom.new_csrf_cookie"
MAX_FORM_FIELDS = 200
MAX_FORM_FILES = 10


def csrf_token(request: Request) -> str:
    """The token a form on this page must send back in its `csrf_token` field."""
    session_token = request.scope.get(SESSION_TOKEN_KEY)
    if session_token:
        return _derived(session_token)
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if _looks_random(cookie):
        return cookie
    fresh = request.scope.get(_NEW_COOKIE_KEY)
    if fresh is None:
        fresh = request.scope[_NEW_COOKIE_KEY] = secrets.token_urlsafe(32)
    return str(fresh)


def set_csrf_cookie(request: Request, response: Response) -> None:
    """Give the browser the anonymous token `csrf_token` made for this page, if any
    (render.py calls it on every page it renders)."""
    fresh = request.scope.get(_NEW_COOKIE_KEY)
    if fresh is not None:
        response.set_cookie(CSRF_COOKIE, fresh, path="/", secure=True, httponly=True,
                            samesite="strict")


async def checked_form(request: Request) -> FormData:
    """The POSTed form, once its CSRF token matched; 403 otherwise. Forms are capped in
    fields and files (python-multipart via Starlette); the body size is capped by the
    application (WEB_MAX_BODY)."""
    form = await request.form(max_files=MAX_FORM_FILES, max_fields=MAX_FORM_FIELDS)
    sent = form.get(CSRF_FIELD)
    if not isinstance(sent, str) or not _matches(request, sent):
        raise HTTPException(403, "The form expired or did not come from this site:"
                                 " reload the page and try again.")
    return form


def _matches(request: Request, sent: str) -> bool:
    session_token = request.scope.get(SESSION_TOKEN_KEY)
    if session_token:
        expected = _derived(session_token)
    else:
        expected = request.cookies.get(CSRF_COOKIE, "")
        if not _looks_random(expected):
            return False
    return hmac.compare_digest(sent.encode(), expected.encode())


def _derived(session_token: str) -> str:
    return hmac.new(session_token.encode(), b"postroom csrf", hashlib.sha256).hexdigest()


def _looks_random(value: str) -> bool:
    return 32 <= len(value) <= 64 and value.replace("-", "").replace("_", "").isalnum()
