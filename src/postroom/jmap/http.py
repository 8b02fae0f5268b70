"""JMAP over HTTP (issue 23, RFC 8620 §2, §3): the session resource and the API endpoint,
served on the web listener beside the console.

Owns `routes(ctx)`, the Starlette routes app.py hands to `web.application.build_app`:
- GET /.well-known/jmap: the Session object (§2.2), served here (no redirect): one
  personal account per user (accountId "a" + its store id in base 36, context.py),
  the capabilities the registry has methods for (context.JmapContext.advertised), and
  apiUrl/downloadUrl/uploadUrl/eventSourceUrl under /jmap/ on the origin the client used;
- POST /jmap/api/: one Request (§3.3) → one Response (§3.4) through core.run_request;
- the upload and download routes of httpblobs.py.

Invariants:
- Every route authenticates first (httpauth.py: Basic or Bearer, never the web cookie,
  hence no CSRF token) and refuses other sites' browser requests.
- A request body is read as it streams, never past maxSizeRequest: the web app's
  WEB_MAX_BODY does not apply under /jmap/ (UNCAPPED), JMAP's caps do; a larger body
  is the §3.6.1 "limit" problem, status 400, as are bodies that are not JSON or not a
  Request. maxConcurrentRequests holds per account: one more is a "limit" problem too.
- A body over PARSE_ON_LOOP bytes is parsed on a worker thread: parsing 5 MB of JSON
  takes about half a second, which the event loop (every mail connection's) must not
  wait for.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from postroom.jmap import httpblobs
from postroom.jmap.context import (
    WEBSOCKET,
    CallContext,
    Capability,
    JmapContext,
    jmap_account_id,
)
from postroom.jmap.core import CORE_CAPABILITY, parse_request, run_request
from postroom.jmap.errors import RequestError, RequestErrorType
from postroom.jmap.httpanswers import render_request_error
from postroom.jmap.httpauth import guarded
from postroom.jmap.session import Account as SessionAccount
from postroom.jmap.session import SessionUrls, build_session
from postroom.store.api import Account

PREFIX = "/jmap"
UNCAPPED = (PREFIX + "/",)  # paths whose bodies JMAP caps (web/middleware.py BodyLimit)
PARSE_ON_LOOP = 64 * 1024  # bytes of request body parsed on the event loop
_HOST = re.compile(r"(?:[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*|\[[0-9A-Fa-f:.]{2,45}\])"
                   r"(?::[0-9]{1,5})?")



def routes(ctx: JmapContext) -> list[BaseRoute]:
    return [
        Route("/.well-known/jmap", guarded(ctx, handle_session), methods=["GET"]),
        Route(PREFIX + "/api/", guarded(ctx, handle_api), methods=["POST"]),
        Route(PREFIX + "/api", guarded(ctx, handle_api), methods=["POST"]),
        Route(PREFIX + "/upload/{accountId}/", guarded(ctx, httpblobs.handle_upload),
              methods=["POST"]),
        Route(PREFIX + "/download/{accountId}/{blobId}/{name:path}",
              guarded(ctx, httpblobs.handle_download), methods=["GET"]),
    ]


# -- the session resource (§2) ------------------------------------------------------------


def base_url(ctx: JmapContext, request: Request) -> str:
    """https:// and the origin the client addressed (its Host, when well-formed; else
    OVERRIDE_HOSTNAME and WEB_PORT): URLs the client can reach as it reached this one."""
    host = request.headers.get("host", "")
    if not _HOST.fullmatch(host):
        host = f"{ctx.config.hostname}:{ctx.config.web_port}"
    return f"https://{host}"


def session_for(ctx: JmapContext, request: Request, account: Account) -> dict[str, Any]:
    """The Session object of `account`'s user, `state` included."""
    account_id = jmap_account_id(account.id)
    uris = ctx.advertised()
    server: dict[str, Any] = {}
    per_account: dict[str, Any] = {}
    for uri in uris:
        if uri == CORE_CAPABILITY:
            continue  # build_session renders core from the limits
        capability = ctx.capabilities.get(uri, Capability())
        server[uri] = dict(capability.server)
        if uri != WEBSOCKET:
            per_account[uri] = dict(capability.account)
    base = base_url(ctx, request)
    if WEBSOCKET in server and ctx.websocket_path is not None:  # RFC 8887 §4
        server[WEBSOCKET] = {"url": "wss://" + base.removeprefix("https://")
                             + ctx.websocket_path, "supportsPush": ctx.supports_push}
    return build_session(
        username=account.address,
        accounts={account_id: SessionAccount(account.address, capabilities=per_account)},
        primary_accounts={uri: account_id for uri in per_account},
        urls=SessionUrls.under(base, PREFIX), limits=ctx.limits, capabilities=server)


async def handle_session(ctx: JmapContext, request: Request, account: Account) -> Response:
    return JSONResponse(session_for(ctx, request, account))


# -- the API endpoint (§3) ----------------------------------------------------------------


async def handle_api(ctx: JmapContext, request: Request, account: Account) -> Response:
    with ctx.requests.slot(account.id) as is_admitted:
        if not is_admitted:
            return render_request_error(RequestError(
                RequestErrorType.LIMIT, f"more than {ctx.limits.max_concurrent_requests}"
                " requests at once", limit="maxConcurrentRequests"))
        body = await read_body(request, ctx.limits.max_size_request)
        try:
            if body is None:
                raise RequestError(RequestErrorType.LIMIT, "request exceeds"
                                   f" {ctx.limits.max_size_request} bytes",
                                   limit="maxSizeRequest")
            known = ctx.advertised()
            parsed = (parse_request(body, ctx.limits, known) if len(body) <= PARSE_ON_LOOP
                      else await asyncio.to_thread(parse_request, body, ctx.limits, known))
        except RequestError as error:
            # A body left unread cannot be skipped on a kept-alive connection: close it.
            return render_request_error(error, is_closing=body is None)
        state = session_for(ctx, request, account)["state"]
        call_context = CallContext(ctx, account, jmap_account_id(account.id), state)
        answer = await run_request(parsed, ctx.registry, call_context)
    return JSONResponse(answer)


async def read_body(request: Request, limit: int) -> bytes | None:
    """The request body, or None as soon as it is known to exceed `limit` bytes."""
    announced = request.headers.get("content-length", "")
    if announced.isdigit() and int(announced) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
