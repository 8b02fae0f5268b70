"""ASGI middleware of the web face: security headers on every response and the request
body cap.

Owns the headers every answer carries — error pages, redirects and static files
included: a strict Content-Security-Policy (no inline script or style, nothing framed,
forms only to this site), `X-Content-Type-Options: nosniff`, `Referrer-Policy:
no-referrer`, `X-Frame-Options: DENY` for old browsers, and `Cache-Control: no-store`
on everything but /static/ and JMAP downloads (whose answers say their own caching,
RFC 8620 §6.2) — and WEB_MAX_BODY: a body announced larger is 413 before it is read, one
that turns out larger while streaming is cut off the same way. Paths under an
`exempt` prefix (/jmap/: the API and uploads, whose caps are JMAP's maxSizeRequest and
maxSizeUpload, enforced by jmap/http.py as the body streams in) are not capped here.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
       " font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none';"
       " base-uri 'none'; object-src 'none'")
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
}


# Paths whose answers keep their own Cache-Control (or none) instead of no-store.
OWN_CACHE_CONTROL = ("/static/", "/jmap/download/")


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cacheable = scope["path"].startswith(OWN_CACHE_CONTROL)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
                if not cacheable:
                    headers["cache-control"] = "no-store"
            await send(message)

        await self.app(scope, receive, with_headers)


class BodyLimit:
    """Refuses (413) a request body over `limit` bytes, except under an `exempt` path
    prefix, whose handlers cap bodies themselves."""

    def __init__(self, app: ASGIApp, limit: int, exempt: tuple[str, ...] = ()) -> None:
        self.app, self.limit, self.exempt = app, limit, exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.exempt):
            await self.app(scope, receive, send)
            return
        announced = dict(scope["headers"]).get(b"content-length", b"0")
        if not announced.isdigit() or int(announced) > self.limit:
            await _too_large(scope, receive, send)
            return
        received = 0
        started = False

        async def counting() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge
            return message

        async def tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting, tracking)
        except BodyTooLarge:
            if not started:
                await _too_large(scope, receive, send)


class BodyTooLarge(Exception):
    pass


async def _too_large(scope: Scope, receive: Receive, send: Send) -> None:
    response = PlainTextResponse("Request body too large.", status_code=413,
                                 headers={"connection": "close"})
    await response(scope, receive, send)
