"""The web application (issue 21): every page module's routes under one Starlette app.

Owns `build_app(ctx)`: the routes of auth.py, admin.py (W2), selfservice.py (W3),
selfservicetokens.py (API tokens), autoconfig.py and health.py (W4), twofactor.py, and
any extra routes app.py hands in (JMAP's); /static/ (web/static/); the middleware
order — security headers outermost (so even errors carry them), then the body cap, then
the session load; the error pages (error.html) and `RedirectTo` answers.

Where to add a page: a module web/<name>.py with `def routes() -> list[BaseRoute]`, its
line in `_route_modules`, templates in web/templates/ extending base.html; handlers
begin with `require_user`/`require_admin` and read POSTs with `checked_form`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from postroom.web import (
    admin,
    auth,
    autoconfig,
    health,
    selfservice,
    selfservicetokens,
    twofactor,
)
from postroom.web.context import WebContext
from postroom.web.middleware import SECURITY_HEADERS, BodyLimit, SecurityHeaders
from postroom.web.render import RedirectTo, redirect, render
from postroom.web.sessions import SessionLoader

log = logging.getLogger("postroom.web")
STATIC = Path(__file__).parent / "static"
ERROR_TITLES = {400: "Bad request", 403: "Forbidden", 404: "Not found",
                405: "Method not allowed", 413: "Request too large",
                500: "Internal error"}


def _route_modules() -> list[list[BaseRoute]]:
    return [auth.routes(), twofactor.routes(), admin.routes(), selfservice.routes(),
            selfservicetokens.routes(), autoconfig.routes(), health.routes()]


def build_app(ctx: WebContext, extra_routes: Sequence[BaseRoute] = (),
              uncapped: tuple[str, ...] = ()) -> Starlette:
    """The app; `extra_routes` (JMAP's, from app.py: web/ does not import jmap/) come
    first; bodies under an `uncapped` path prefix are capped by their handlers instead
    of WEB_MAX_BODY."""
    routes: list[BaseRoute] = [*extra_routes]
    routes += [route for group in _route_modules() for route in group]
    routes.append(Mount("/static", StaticFiles(directory=STATIC), name="static"))
    app = Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeaders),
                    Middleware(BodyLimit, limit=ctx.config.web_max_body, exempt=uncapped),
                    Middleware(SessionLoader, ctx=ctx)],
        exception_handlers={HTTPException: _http_error, RedirectTo: _redirect,
                            Exception: _internal_error})
    app.state.ctx = ctx
    return app


async def _redirect(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RedirectTo)
    return redirect(exc.url, exc.message, exc.kind)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    title = ERROR_TITLES.get(exc.status_code, "Error")
    detail = exc.detail if exc.detail and exc.detail != title else ""
    response = render(request, "error.html", exc.status_code, title=title, detail=detail,
                      status=exc.status_code)
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.error("web request %s %s failed", request.method, request.url.path, exc_info=exc)
    response = render(request, "error.html", 500, title=ERROR_TITLES[500], status=500,
                      detail="Something went wrong; the server log has the details.")
    # Starlette answers this one outside the middleware stack: the headers are set here.
    response.headers.update(SECURITY_HEADERS)
    response.headers["cache-control"] = "no-store"
    return response
