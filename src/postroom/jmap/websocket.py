"""JMAP over WebSocket (issue 23, RFC 8887) at /jmap/ws, and `push_routes(ctx)`: the
routes of both push channels (this one and push.py's EventSource), which also makes the
session advertise urn:ietf:params:jmap:websocket {url, supportsPush: true}.

Owns the WebSocket binding:
- The handshake (§4.2) is an HTTP GET and is judged as one, in this order: a page of
  another site is refused (403, as every JMAP route: no CORS, and a browser would send
  remembered Basic credentials), a handshake not offering the "jmap" subprotocol is
  refused (400: RFC 6455 would let us accept without one, but a client that did not ask
  for JMAP cannot be speaking it), then authentication exactly as HTTP's
  (httpauth.authenticate: 401 with the challenges, 403 when banned), then the push
  connection limits (push.PushGate, 429). Refusals are HTTP answers with problem
  details (the ASGI WebSocket denial response), before any upgrade.
- Messages (§4.3) are text frames holding one JSON object with "@type":
  "Request" (with an optional "id") is run as an HTTP API request is and answered with
  "@type": "Response" and "requestId"; a message that is not JSON, not an object, of an
  unknown "@type", over maxSizeRequest, or a Request that does not parse, is answered
  with a "@type": "RequestError" problem (with "requestId" when its id was read).
  Requests run concurrently (§4.3.3 lets responses come out of order), each holding one
  of the account's maxConcurrentRequests slots, shared with HTTP; one more is a "limit"
  RequestError. A binary frame is answered as notJSON.
- Push (§4.3.5): WebSocketPushEnable {dataTypes (null: all), pushState} starts a
  push.StateWatch and sends StateChange objects with "pushState" (the account's state
  string); a pushState other than the current state is answered at once with every
  state type at the current state (EmailDelivery excepted: which deliveries happened
  since cannot be told). A second enable replaces the first; WebSocketPushDisable stops.

Invariants: when the connection ends — client close, server shutdown (closed with 1001
when `runtime.shutting_down` is set), error — every task it started is cancelled and
awaited, its watch closed and its push lease released; nothing is sent after our close.
The transport caps a message at uvicorn's ws_max_size (web/server.py); JMAP's own cap is
maxSizeRequest, checked here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from postroom.jmap.context import CallContext, JmapContext, jmap_account_id
from postroom.jmap.core import decode_json, parse_request, run_request
from postroom.jmap.errors import RequestError, RequestErrorType
from postroom.jmap.http import PARSE_ON_LOOP, session_for
from postroom.jmap.httpanswers import problem
from postroom.jmap.httpauth import AuthFailure, authenticate, is_cross_site, render_auth_failure
from postroom.jmap.push import (
    EVENT_SOURCE_PATH,
    PushGate,
    PushLease,
    StateWatch,
    event_source_endpoint,
    refuse_busy,
)
from postroom.store.api import Account

log = logging.getLogger(__name__)

WEBSOCKET_PATH = "/jmap/ws"
SUBPROTOCOL = "jmap"  # RFC 8887 §3
GOING_AWAY = 1001  # RFC 6455 §7.4.1: the server is going down


def push_routes(ctx: JmapContext) -> list[BaseRoute]:
    """EventSource and WebSocket, sharing one PushGate; sets ctx.websocket_path and
    ctx.supports_push so the session advertises the WebSocket capability."""
    gate = PushGate()
    ctx.websocket_path = WEBSOCKET_PATH
    ctx.supports_push = True
    events = event_source_endpoint(ctx, gate)
    return [
        Route(EVENT_SOURCE_PATH, events, methods=["GET"]),
        Route(EVENT_SOURCE_PATH.rstrip("/"), events, methods=["GET"]),
        WebSocketRoute(WEBSOCKET_PATH, websocket_endpoint(ctx, gate)),
    ]


def upgrade_request(websocket: WebSocket) -> Request:
    """The handshake as the HTTP GET it is (RFC 6455 §4.1), for what reads requests."""
    return Request({**websocket.scope, "type": "http", "method": "GET"})


def websocket_endpoint(ctx: JmapContext, gate: PushGate
                       ) -> Callable[[WebSocket], Awaitable[None]]:
    async def endpoint(websocket: WebSocket) -> None:
        request = upgrade_request(websocket)
        admitted = await admit(ctx, gate, websocket, request)
        if isinstance(admitted, Response):
            await websocket.send_denial_response(admitted)
            return
        account, lease = admitted
        try:
            await websocket.accept(subprotocol=SUBPROTOCOL)
            await JmapSocket(ctx, websocket, request, account).run()
        finally:
            lease.release()

    return endpoint


async def admit(ctx: JmapContext, gate: PushGate, websocket: WebSocket,
                request: Request) -> tuple[Account, PushLease] | Response:
    """The handshake's account and push lease, or the HTTP answer refusing it."""
    if is_cross_site(request):
        return problem(403, "JMAP is not offered to pages of other sites (no CORS).")
    if SUBPROTOCOL not in websocket.scope.get("subprotocols", ()):
        return problem(400, 'JMAP over WebSocket needs the "jmap" subprotocol'
                            " (Sec-WebSocket-Protocol, RFC 8887 §4.2).")
    found = await authenticate(ctx, request)
    if isinstance(found, AuthFailure):
        return render_auth_failure(found)
    lease = gate.admit(found.account.id, ctx.client_key(request))
    if lease is None:
        return refuse_busy(gate)
    return found.account, lease


class JmapSocket:
    """One accepted JMAP WebSocket connection: its reader loop, request tasks and push."""

    def __init__(self, ctx: JmapContext, websocket: WebSocket, request: Request,
                 account: Account) -> None:
        self.ctx = ctx
        self.websocket = websocket
        self.request = request
        self.account = account
        self._tasks: set[asyncio.Task[None]] = set()
        self._push: asyncio.Task[None] | None = None
        self._is_closed = False

    async def run(self) -> None:
        shutdown = asyncio.create_task(self._close_at_shutdown())
        try:
            while True:
                message = await self.websocket.receive()
                if message["type"] != "websocket.receive":
                    return  # websocket.disconnect: the client closed, or we did
                await self.handle_message(message.get("text"))
        finally:
            self._is_closed = True
            shutdown.cancel()
            await self._stop_push()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(shutdown, *self._tasks, return_exceptions=True)

    async def _close_at_shutdown(self) -> None:
        await self.ctx.runtime.shutting_down.wait()
        if not self._is_closed:
            self._is_closed = True
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await self.websocket.close(GOING_AWAY, "server shutting down")

    # -- messages (§4.3) -----------------------------------------------------------------

    async def handle_message(self, text: str | None) -> None:
        try:
            if text is None:
                raise RequestError(RequestErrorType.NOT_JSON,
                                   "JMAP messages are text frames (RFC 8887 §4.3)")
            body = self._sized(text)
            document = (decode_json(body, self.ctx.limits.max_json_depth)
                        if len(body) <= PARSE_ON_LOOP else
                        await asyncio.to_thread(decode_json, body,
                                                self.ctx.limits.max_json_depth))
        except RequestError as error:
            await self.send_error(error, None)
            return
        request_id = document.get("id") if isinstance(document, dict) else None
        try:
            await self._dispatch(document, body)
        except RequestError as error:
            await self.send_error(error, request_id if isinstance(request_id, str) else None)

    def _sized(self, text: str) -> bytes:
        limit = self.ctx.limits.max_size_request
        body = text.encode() if len(text) <= limit else b""
        if len(text) > limit or len(body) > limit:
            raise RequestError(RequestErrorType.LIMIT, f"message exceeds {limit} bytes",
                               limit="maxSizeRequest")
        return body

    async def _dispatch(self, document: Any, body: bytes) -> None:
        if not isinstance(document, dict):
            raise RequestError(RequestErrorType.NOT_REQUEST, "a message is a JSON object")
        kind, request_id = document.get("@type"), document.get("id")
        if request_id is not None and not isinstance(request_id, str):
            raise RequestError(RequestErrorType.NOT_REQUEST, "'id' must be a string")
        if kind == "Request":
            self._start(self._answer(body, request_id))
        elif kind == "WebSocketPushEnable":
            await self._enable_push(document)
        elif kind == "WebSocketPushDisable":
            await self._stop_push()
        else:
            raise RequestError(RequestErrorType.NOT_REQUEST,
                               "'@type' must be Request, WebSocketPushEnable or"
                               " WebSocketPushDisable")

    def _start(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("jmap websocket request failed", exc_info=task.exception())

    async def _answer(self, body: bytes, request_id: str | None) -> None:
        """One Request (§4.3.2), answered as HTTP's API endpoint answers it."""
        ctx, account = self.ctx, self.account
        with ctx.requests.slot(account.id) as is_admitted:
            if not is_admitted:
                await self.send_error(RequestError(
                    RequestErrorType.LIMIT, f"more than {ctx.limits.max_concurrent_requests}"
                    " requests at once", limit="maxConcurrentRequests"), request_id)
                return
            known = ctx.advertised()
            try:
                parsed = (parse_request(body, ctx.limits, known) if len(body) <= PARSE_ON_LOOP
                          else await asyncio.to_thread(parse_request, body, ctx.limits, known))
            except RequestError as error:
                await self.send_error(error, request_id)
                return
            state = session_for(ctx, self.request, account)["state"]
            call_context = CallContext(ctx, account, jmap_account_id(account.id), state)
            answer = await run_request(parsed, ctx.registry, call_context)
        reply: dict[str, Any] = {"@type": "Response", **answer}
        if request_id is not None:
            reply["requestId"] = request_id
        await self.send(reply)

    # -- push (§4.3.5) -------------------------------------------------------------------

    async def _enable_push(self, document: dict[str, Any]) -> None:
        types, push_state = document.get("dataTypes"), document.get("pushState")
        if types is not None and not (isinstance(types, list)
                                      and all(isinstance(name, str) for name in types)):
            raise RequestError(RequestErrorType.NOT_REQUEST,
                               "'dataTypes' must be null or an array of strings")
        if push_state is not None and not isinstance(push_state, str):
            raise RequestError(RequestErrorType.NOT_REQUEST, "'pushState' must be a string")
        await self._stop_push()
        watch = await StateWatch.open(self.ctx.runtime, self.account)
        wanted = None if types is None else frozenset(types)
        self._push = asyncio.create_task(self._push_changes(watch, wanted, push_state))

    async def _push_changes(self, watch: StateWatch, types: frozenset[str] | None,
                            push_state: str | None) -> None:
        try:
            if push_state is not None and push_state != watch.state:
                missed = watch.everything().only(types)
                if missed is not None:
                    await self.send(missed.render(push_state=watch.state))
            while True:
                change = await watch.next_change(None)
                if change is None:
                    return  # the watch closed: the server is shutting down
                shown = change.only(types)
                if shown is not None:
                    await self.send(shown.render(push_state=watch.state))
        finally:
            watch.close()

    async def _stop_push(self) -> None:
        push, self._push = self._push, None
        if push is not None:
            push.cancel()
            await asyncio.gather(push, return_exceptions=True)

    # -- sending ------------------------------------------------------------------------------

    async def send_error(self, error: RequestError, request_id: str | None) -> None:
        """A RequestError (§4.3.4): the problem details with "@type" and "requestId"."""
        reply: dict[str, Any] = {"@type": "RequestError", **error.render()}
        if request_id is not None:
            reply["requestId"] = request_id
        await self.send(reply)

    async def send(self, message: dict[str, Any]) -> None:
        if self._is_closed:
            return
        try:
            await self.websocket.send_text(json.dumps(message))
        except (WebSocketDisconnect, RuntimeError, OSError):
            # The connection ended while this was being prepared: the reader sees it.
            log.debug("jmap websocket: message not sent, the connection has closed")
