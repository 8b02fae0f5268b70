"""Pages: Jinja2 templates (autoescape always on), the navigation, flash messages,
redirects.

Owns `render(request, template, **values)` and `redirect(url, message)`; `RedirectTo`
(sessions.py, re-exported here) raised anywhere in a handler answers 303 to another
page. Templates live in web/templates/ and extend base.html; they get `request`,
`user` (WebUser or None), `nav`, `flashes`, `csrf_field()` and whatever the handler
passes.

Invariants: every value reaches HTML through Jinja's autoescape (no `|safe` on anything a
user or a remote party controls); no inline script or style (the CSP forbids it: JS and
CSS are files under web/static/); a flash message travels in a short-lived `__Host-`
cookie and is shown once, escaped like everything else.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse

from postroom.web.forms import CSRF_FIELD, csrf_token, set_csrf_cookie
from postroom.web.sessions import RedirectTo, current_user

__all__ = ["RedirectTo", "environment", "redirect", "render", "safe_next"]

TEMPLATES = Path(__file__).parent / "templates"
FLASH_COOKIE = "__Host-postroom-flash"
MAX_FLASH = 500  # characters of one message
# The navigation: (path, label). Admin pages (web/admin*.py) and self-service pages
# (web/selfservice*.py) add their entries here with a one-line edit.
NAV_USER: list[tuple[str, str]] = [("/me", "My account")]
NAV_ADMIN: list[tuple[str, str]] = [("/admin", "Admin")]

_env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(
    enabled_extensions=("html", "xml"), default_for_string=True, default=True))


def environment() -> Environment:
    """The shared Jinja environment (for a module that needs a filter or a global)."""
    return _env


def render(request: Request, template: str, status_code: int = 200,
           **values: Any) -> HTMLResponse:
    """`template` (a file in web/templates/) rendered with `values`, in the layout of
    base.html, with this request's user, navigation and pending flash messages."""
    user = current_user(request)
    flashes = _read_flash(request)
    nav = [] if user is None else NAV_USER + (NAV_ADMIN if user.is_admin else [])
    html = _env.get_template(template).render(
        request=request, user=user, nav=nav, flashes=flashes,
        csrf_field=lambda: _csrf_input(request), csrf_token=lambda: csrf_token(request),
        **values)
    response = HTMLResponse(html, status_code=status_code)
    if flashes:
        response.delete_cookie(FLASH_COOKIE, path="/", secure=True, httponly=True,
                               samesite="strict")
    set_csrf_cookie(request, response)
    return response


def redirect(url: str, message: str = "", kind: str = "info") -> RedirectResponse:
    """303 to `url` (after a POST: the browser GETs it), with a message the next page
    shows once. `kind` is "info" or "error"."""
    response = RedirectResponse(url, status_code=303)
    if message:
        value = urllib.parse.quote(f"{kind}:{message[:MAX_FLASH]}", safe="")
        response.set_cookie(FLASH_COOKIE, value, max_age=60, path="/", secure=True,
                            httponly=True, samesite="strict")
    return response


def _read_flash(request: Request) -> list[tuple[str, str]]:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return []
    kind, _, message = urllib.parse.unquote(raw)[: MAX_FLASH + 10].partition(":")
    return [("error" if kind == "error" else "info", message)]


def _csrf_input(request: Request) -> Markup:
    return Markup('<input type="hidden" name="{}" value="{}">').format(
        CSRF_FIELD, escape(csrf_token(request)))


def safe_next(url: str | None, default: str = "/") -> str:
    """A redirect target from a query parameter: a local path only (no `//host`, no
    scheme), else `default`."""
    if not url or not url.startswith("/") or url.startswith(("//", "/\\")):
        return default
    if any(ord(char) < 0x21 for char in url) or len(url) > 2000:
        return default
    return url
