"""JMAP over WebSocket (issue 23, RFC 8887) against a whole App over real TLS sockets,
with wsproto as the client: the handshake (the jmap subprotocol, authentication, other
sites' pages), requests and responses matched by id, RequestErrors, maxSizeRequest and
maxConcurrentRequests, push enable/disable with pushState, the session's websocket
capability, and the connection's clean-up (the listener's connection slot included)."""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any

import pytest
from wsproto.events import CloseConnection, Ping, Pong

from postroom.jmap.context import CallContext, JmapContext, jmap_account_id
from postroom.jmap.core import Call
from postroom.web import server as web_server
from tests.jmap.httpclient import JmapClient, basic
from tests.jmap.pushclient import (
    WebSocketClient,
    account_of,
    deliver,
    shutdown_tasks,
    subscribers,
    wait_until,
)
from tests.support.server import AppThread
from tests.web.conftest import StartWebApp

CORE = "urn:ietf:params:jmap:core"
WEBSOCKET = "urn:ietf:params:jmap:websocket"
PROBLEM = "urn:ietf:params:jmap:error:"
ECHO = [["Core/echo", {"hello": True, "high": 5}, "c1"]]


def connect(app: AppThread, tls: ssl.SSLContext, **options: Any) -> WebSocketClient:
    client = WebSocketClient(app, tls, options.pop("authorization", basic()), **options)
    assert client.accepted is not None, (client.rejected, client.reject_body)
    return client


def problem_of(client: WebSocketClient) -> dict[str, Any]:
    assert client.rejected is not None
    headers = dict(client.rejected.headers)
    assert headers[b"content-type"] == b"application/problem+json"
    return dict(json.loads(client.reject_body))


def test_the_session_advertises_it_and_the_handshake(web_app: StartWebApp,
                                                     client_tls: ssl.SSLContext) -> None:
    with web_app() as app:
        session = JmapClient(app, client_tls, basic()).session().json()
        assert session["capabilities"][WEBSOCKET] == {
            "url": f"wss://127.0.0.1:{app.port('web')}/jmap/ws", "supportsPush": True}
        client = connect(app, client_tls, subprotocols=["other", "jmap"])
        assert client.accepted is not None and client.accepted.subprotocol == "jmap"
        client.close()
        for offered in ([], ["chat"]):
            refused = WebSocketClient(app, client_tls, basic(), subprotocols=offered)
            assert refused.rejected is not None and refused.rejected.status_code == 400
            assert "jmap" in problem_of(refused)["detail"]
            refused.close()
        anonymous = WebSocketClient(app, client_tls, None)
        assert anonymous.rejected is not None and anonymous.rejected.status_code == 401
        assert b"www-authenticate" in dict(anonymous.rejected.headers)
        anonymous.close()
        wrong = WebSocketClient(app, client_tls, basic(password="wrong"))
        assert wrong.rejected is not None and wrong.rejected.status_code == 401
        wrong.close()
        # Only the JMAP path speaks WebSocket.
        elsewhere = WebSocketClient(app, client_tls, basic(), path="/login")
        assert elsewhere.rejected is not None and elsewhere.rejected.status_code == 403
        elsewhere.close()


def test_requests_and_responses(web_app: StartWebApp, client_tls: ssl.SSLContext) -> None:
    with web_app() as app:
        client = connect(app, client_tls)
        try:
            reply = client.request(ECHO, "R1")
            assert reply["@type"] == "Response" and reply["requestId"] == "R1"
            assert reply["methodResponses"] == [["Core/echo", {"hello": True, "high": 5}, "c1"]]
            http_session = JmapClient(app, client_tls, basic()).session().json()
            assert reply["sessionState"] == http_session["state"]
            anonymous_id = client.request(ECHO, None)  # "id" is optional (§4.3.2)
            assert anonymous_id["@type"] == "Response" and "requestId" not in anonymous_id
            unknown = client.request([["Nope/get", {}, "c2"]], "R2")
            name, arguments, call_id = unknown["methodResponses"][0]
            assert (name, arguments["type"], call_id) == ("error", "unknownMethod", "c2")
            # Ping/pong on the way (RFC 6455 control frames) leaves the session as it was.
            client._send(Ping(b"hi"))
            assert isinstance(client.next_event(), Pong)
            assert client.request(ECHO, "R3")["requestId"] == "R3"
        finally:
            client.close()


def request_error(client: WebSocketClient) -> dict[str, Any]:
    reply = client.receive()
    assert reply["@type"] == "RequestError", reply
    assert reply["type"].startswith(PROBLEM) and reply["status"] == 400
    return reply


def test_request_errors_and_max_size_request(web_app: StartWebApp,
                                             client_tls: ssl.SSLContext) -> None:
    with web_app() as app:
        client = connect(app, client_tls)
        try:
            client.send_text("The quick brown fox jumps over the lazy dog.")
            not_json = request_error(client)
            assert not_json["type"] == PROBLEM + "notJSON" and "requestId" not in not_json
            client.send_bytes(b'{"@type": "Request"}')
            assert request_error(client)["type"] == PROBLEM + "notJSON"
            client.send_json([1, 2])
            assert request_error(client)["type"] == PROBLEM + "notRequest"
            client.send_json({"@type": "Bogus", "id": "B1"})
            bogus = request_error(client)
            assert bogus["type"] == PROBLEM + "notRequest" and bogus["requestId"] == "B1"
            client.send_json({"@type": "Request", "id": 7, "using": [], "methodCalls": []})
            assert request_error(client)["type"] == PROBLEM + "notRequest"
            client.send_json({"@type": "Request", "id": "R9", "using": [CORE]})
            missing = request_error(client)
            assert missing["type"] == PROBLEM + "notRequest" and missing["requestId"] == "R9"
            unknown = client.request(ECHO, "R10", using=[CORE, "urn:example:nothing"])
            assert unknown["@type"] == "RequestError" and unknown["requestId"] == "R10"
            assert unknown["type"] == PROBLEM + "unknownCapability"
            client.send_json({"@type": "WebSocketPushEnable", "dataTypes": "Email"})
            assert request_error(client)["type"] == PROBLEM + "notRequest"
            limit = jmap_context(app).limits.max_size_request
            client.send_json({"@type": "Request", "id": "big", "using": [CORE],
                              "methodCalls": [["Core/echo", {"x": "a" * limit}, "c"]]})
            too_big = request_error(client)  # not read: its id is not known
            assert too_big["type"] == PROBLEM + "limit"
            assert too_big["limit"] == "maxSizeRequest" and "requestId" not in too_big
            # The connection is still good after all that.
            assert client.request(ECHO, "R11")["requestId"] == "R11"
        finally:
            client.close()


def jmap_context(app: AppThread) -> JmapContext:
    assert app.app.jmap is not None
    return app.app.jmap


def test_max_concurrent_requests_is_shared_and_counted(
        web_app: StartWebApp, client_tls: ssl.SSLContext) -> None:
    """Requests run concurrently, each holding one of the account's slots: with every
    slot held, one more is a "limit" RequestError; once they finish, all are answered."""
    with web_app() as app:
        ctx = jmap_context(app)
        gate = asyncio.Event()
        started = asyncio.Semaphore(0)

        async def wait(call: Call[CallContext]) -> list[tuple[str, dict[str, Any]]]:
            started.release()
            await gate.wait()
            return [("Test/wait", {})]

        ctx.registry.register("Test/wait", CORE, wait)
        limit = ctx.limits.max_concurrent_requests
        client = connect(app, client_tls)
        try:
            for n in range(limit):
                client.send_json({"@type": "Request", "id": f"w{n}", "using": [CORE],
                                  "methodCalls": [["Test/wait", {}, "c"]]})

            async def all_started() -> None:
                for _ in range(limit):
                    await asyncio.wait_for(started.acquire(), 10)

            app.call(all_started())
            client.send_json({"@type": "Request", "id": "extra", "using": [CORE],
                              "methodCalls": ECHO})
            refused = request_error(client)
            assert refused["requestId"] == "extra" and refused["limit"] == "maxConcurrentRequests"
            app.loop.call_soon_threadsafe(gate.set)
            answered = {client.receive()["requestId"] for _ in range(limit)}
            assert answered == {f"w{n}" for n in range(limit)}
        finally:
            client.close()


def test_push_enable_and_disable(web_app: StartWebApp, client_tls: ssl.SSLContext) -> None:
    with web_app() as app:
        account = account_of(app)
        key = jmap_account_id(account.id)
        client = connect(app, client_tls)
        try:
            client.send_json({"@type": "WebSocketPushEnable", "dataTypes": None})
            assert client.request(ECHO, "sync")["requestId"] == "sync"  # enable is handled
            deliver(app)
            change = client.receive()
            state = app.call(app.runtime.store.jmap_state(account.id))
            assert change == {"@type": "StateChange", "pushState": state, "changed": {key: {
                "Email": state, "Mailbox": state, "Thread": state, "EmailDelivery": state}}}
            client.send_json({"@type": "WebSocketPushDisable"})
            assert client.request(ECHO, "off")["requestId"] == "off"
            assert subscribers(app, account) == 0 and shutdown_tasks(app) == 0
            deliver(app)
            # Nothing is pushed: the next message is the answer to this request.
            assert client.request(ECHO, "quiet")["requestId"] == "quiet"
            # Re-enabled with the pushState last seen: what was missed comes at once.
            client.send_json({"@type": "WebSocketPushEnable", "dataTypes": ["Mailbox"],
                              "pushState": state})
            missed = client.receive()
            now = app.call(app.runtime.store.jmap_state(account.id))
            assert now != state
            assert missed == {"@type": "StateChange", "pushState": now,
                              "changed": {key: {"Mailbox": now}}}
            # Enabling again with the current pushState sends nothing at once.
            client.send_json({"@type": "WebSocketPushEnable", "dataTypes": ["Email"],
                              "pushState": now})
            assert client.request(ECHO, "same")["requestId"] == "same"
            assert subscribers(app, account) == 1  # the second enable replaced the first
            deliver(app)
            latest = client.receive()
            assert set(latest["changed"][key]) == {"Email"}
        finally:
            client.close()
        wait_until(lambda: subscribers(app, account) == 0, "the push watch closed")
        wait_until(lambda: shutdown_tasks(app) == 0, "the watch's task ended")


def test_the_connection_is_closed_at_shutdown_and_its_slot_released(
        web_app: StartWebApp, client_tls: ssl.SSLContext,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A short head deadline: an upgraded connection must not be cut by it.
    monkeypatch.setattr(web_server, "HEAD_TIMEOUT", 0.2)
    with web_app(MAX_CONNECTIONS_PER_IP=2) as app:
        account = account_of(app)
        client = connect(app, client_tls)
        second = connect(app, client_tls)
        try:
            second.send_json({"@type": "WebSocketPushEnable", "dataTypes": None})
            # Well past HEAD_TIMEOUT (pacing the requests, not synchronising on them).
            for n in range(3):
                app.call(asyncio.sleep(0.2))
                assert client.request(ECHO, f"alive{n}")["requestId"] == f"alive{n}"
            assert second.request(ECHO, "push-on")["requestId"] == "push-on"
            second.close()  # its limiter slot comes back when the socket closes
            wait_until(lambda: subscribers(app, account) == 0, "the push watch closed")
            third = connect(app, client_tls)
            third.close()
            app.loop.call_soon_threadsafe(app.runtime.shutting_down.set)
            event = client.next_event()
            assert isinstance(event, CloseConnection) and event.code == 1001
        finally:
            client.close()
