"""Clients and helpers of the JMAP push tests (issue 23): an EventSource reader over
http.client (chunked text/event-stream read line by line), a JMAP WebSocket client built
on wsproto over a TLS socket, and mail delivered as SMTP delivery does."""

from __future__ import annotations

import asyncio
import datetime as dt
import http.client
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Event,
    Message,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

from postroom.delivery.local import deliver_local
from postroom.jmap.push import SHUTDOWN_TASK
from postroom.store.api import Account, NewMessage
from tests.support.server import AppThread
from tests.web.conftest import USER

MESSAGE = b"From: Ann <ann@example.com>\r\nTo: user@example.test\r\nSubject: hi\r\n\r\nhello\r\n"


def account_of(app: AppThread, address: str = USER) -> Account:
    found = app.call(app.runtime.store.get_account(address))
    assert found is not None
    return found


def deliver(app: AppThread, address: str = USER, mailbox: str = "INBOX",
            raw: bytes = MESSAGE) -> None:
    """A message appended as local delivery appends it (delivery/local.py)."""

    async def run() -> None:
        account = await app.runtime.store.get_account(address)
        assert account is not None
        blob = await app.runtime.blobs.put(raw)
        await deliver_local(app.runtime.store, account.id, blob, len(raw), "", mailbox=mailbox)

    app.call(run())


def append_own(app: AppThread, mailbox: str, address: str = USER) -> None:
    """A message the user files themself (IMAP APPEND to Sent, say)."""

    async def run() -> None:
        store = app.runtime.store
        account = await store.get_account(address)
        assert account is not None
        box = await store.get_mailbox(account.id, mailbox)
        assert box is not None
        blob = await app.runtime.blobs.put(MESSAGE)
        await store.append_message(box.id, NewMessage(blob, len(MESSAGE), dt.datetime.now(
            dt.UTC), frozenset({"\\Seen"}), ""))

    app.call(run())


def subscribers(app: AppThread, account: Account) -> int:
    """Change-feed subscriptions open for the account (the feed's own table)."""
    return len(app.runtime.feed._subscribers.get(account.id, ()))


def shutdown_tasks(app: AppThread) -> int:
    async def count() -> int:
        return sum(task.get_name() == SHUTDOWN_TASK for task in asyncio.all_tasks())

    return app.call(count())


def wait_until(condition: Callable[[], bool], what: str, seconds: float = 10) -> None:
    """Wait for something the server reaches asynchronously (a connection's clean-up)."""
    deadline = time.monotonic() + seconds
    pause = threading.Event()
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        pause.wait(0.01)


# -- EventSource -----------------------------------------------------------------------------


class EventSource:
    """One GET of the eventSourceUrl, read event by event."""

    def __init__(self, app: AppThread, tls: ssl.SSLContext, authorization: str | None,
                 query: str = "types=*&closeafter=no&ping=0",
                 headers: dict[str, str] | None = None) -> None:
        self.conn = http.client.HTTPSConnection("127.0.0.1", app.port("web"), context=tls,
                                                timeout=15)
        sent = dict(headers or {})
        if authorization is not None:
            sent["Authorization"] = authorization
        self.conn.request("GET", "/jmap/eventsource/?" + query, headers=sent)
        self.response = self.conn.getresponse()
        self.status = self.response.status
        self.headers = self.response.headers

    def next_event(self) -> tuple[str, dict[str, Any], str | None] | None:
        """(event name, data, id) of the next event; None when the stream ended."""
        fields: dict[str, str] = {}
        while True:
            line = self.response.readline()
            if not line:
                return None
            text = line.decode().rstrip("\n")
            if text == "":
                if fields:
                    return fields.get("event", "message"), json.loads(fields["data"]), \
                        fields.get("id")
                continue
            name, _, value = text.partition(": ")
            fields[name] = value

    def body(self) -> bytes:
        return self.response.read()

    def close(self) -> None:
        self.conn.close()


# -- WebSocket --------------------------------------------------------------------------------


class WebSocketClient:
    """A JMAP WebSocket client: wsproto over TLS to the App's web port."""

    def __init__(self, app: AppThread, tls: ssl.SSLContext, authorization: str | None,
                 subprotocols: list[str] | None = None, path: str = "/jmap/ws") -> None:
        raw = socket.create_connection(("127.0.0.1", app.port("web")), timeout=15)
        self.sock = tls.wrap_socket(raw, server_hostname="127.0.0.1")
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.pending: list[Event] = []
        headers = [(b"authorization", authorization.encode())] if authorization else []
        self._send(Request(host=f"127.0.0.1:{app.port('web')}", target=path,
                           subprotocols=["jmap"] if subprotocols is None else subprotocols,
                           extra_headers=headers))
        self.accepted: AcceptConnection | None = None
        self.rejected: RejectConnection | None = None
        self.reject_body = b""
        self._handshake()

    def _send(self, event: Event) -> None:
        self.sock.sendall(self.ws.send(event))

    def _events(self) -> list[Event]:
        data = self.sock.recv(65536)
        self.ws.receive_data(data or None)
        return list(self.ws.events())

    def _handshake(self) -> None:
        while self.accepted is None and self.rejected is None:
            for event in self._events():
                if isinstance(event, AcceptConnection):
                    self.accepted = event
                elif isinstance(event, RejectConnection):
                    self.rejected = event
                else:
                    self.pending.append(event)
        while self.rejected is not None and self.rejected.has_body:
            events = self._events()
            if not events:
                break
            done = False
            for event in events:
                assert isinstance(event, RejectData)
                self.reject_body += event.data
                done = done or event.body_finished
            if done:
                break

    def send_json(self, message: Any) -> None:
        self.send_text(json.dumps(message))

    def send_text(self, text: str) -> None:
        self._send(Message(data=text))

    def send_bytes(self, data: bytes) -> None:
        self._send(Message(data=data))

    def next_event(self) -> Event:
        while not self.pending:
            self.pending.extend(self._events())
        return self.pending.pop(0)

    def receive(self) -> dict[str, Any]:
        """The next whole text message, as JSON."""
        parts: list[str] = []
        while True:
            event = self.next_event()
            if isinstance(event, CloseConnection):
                raise ConnectionError(f"closed: {event.code} {event.reason}")
            assert isinstance(event, TextMessage), event
            parts.append(event.data)
            if event.message_finished:
                return dict(json.loads("".join(parts)))

    def request(self, calls: list[list[Any]], request_id: str | None = "R1",
                using: list[str] | None = None) -> dict[str, Any]:
        message: dict[str, Any] = {"@type": "Request",
                                   "using": using or ["urn:ietf:params:jmap:core"],
                                   "methodCalls": calls}
        if request_id is not None:
            message["id"] = request_id
        self.send_json(message)
        return self.receive()

    def close(self) -> None:
        try:
            if self.accepted is not None and self.ws.state is ConnectionState.OPEN:
                self._send(CloseConnection(code=1000))
        except OSError:
            pass  # the server went first
        finally:
            self.sock.close()
