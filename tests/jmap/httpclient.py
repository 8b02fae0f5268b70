"""A JMAP client for the tests (issue 23): HTTPS/1.1 with http.client to the App's web
port, credentials in the Authorization header (never cookies)."""

from __future__ import annotations

import base64
import http.client
import json
import ssl
from collections.abc import Iterable
from typing import Any

from tests.support.server import AppThread
from tests.web.conftest import PASSWORD, USER

CORE = "urn:ietf:params:jmap:core"


def basic(address: str = USER, password: str = PASSWORD) -> str:
    return "Basic " + base64.b64encode(f"{address}:{password}".encode()).decode()


class Reply:
    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.status = response.status
        self.headers = response.headers
        self.body = response.read()

    def json(self) -> Any:
        return json.loads(self.body)


class JmapClient:
    def __init__(self, app: AppThread, tls: ssl.SSLContext,
                 authorization: str | None = None) -> None:
        self.port = app.port("web")
        self.tls = tls
        self.authorization = authorization

    def request(self, method: str, path: str, body: bytes | Iterable[bytes] | None = None,
                headers: dict[str, str] | None = None) -> Reply:
        sent = dict(headers or {})
        if self.authorization is not None:
            sent.setdefault("Authorization", self.authorization)
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.tls,
                                           timeout=30)
        try:
            conn.request(method, path, body=body, headers=sent,
                         encode_chunked=body is not None and not isinstance(body, bytes))
            return Reply(conn.getresponse())
        finally:
            conn.close()

    def announce(self, path: str, length: int, headers: dict[str, str] | None = None) -> Reply:
        """A POST whose head announces `length` body bytes, none of which are sent: the
        server must answer from the head alone."""
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.tls,
                                           timeout=30)
        try:
            conn.putrequest("POST", path)
            for name, value in {"Authorization": self.authorization or "",
                                "Content-Length": str(length), **(headers or {})}.items():
                conn.putheader(name, value)
            conn.endheaders()
            return Reply(conn.getresponse())
        finally:
            conn.close()

    def api(self, calls: list[list[Any]], using: list[str] | None = None,
            **extra: Any) -> Reply:
        request = {"using": using if using is not None else [CORE], "methodCalls": calls,
                   **extra}
        return self.request("POST", "/jmap/api/", json.dumps(request).encode(),
                            {"Content-Type": "application/json"})

    def session(self) -> Reply:
        return self.request("GET", "/.well-known/jmap")
