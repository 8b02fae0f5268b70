"""A loopback HTTPS server for the TLS-RPT tests (stdlib http.server over a trustme
certificate): GET answers `policy` (an MTA-STS policy file), POST keeps the request's
path, content type and body and answers `status`; `stall` makes it hold each POST
unanswered until the server stops."""

from __future__ import annotations

import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import trustme


class HttpsCollector(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.socket = context.wrap_socket(self.socket, server_side=True)
        self.policy = b""
        self.status = 200
        self.stall = False
        self.stopping = threading.Event()
        self.posts: list[tuple[str, str, bytes]] = []  # path, content type, body
        self.posted = threading.Event()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @classmethod
    def started(cls, ca: trustme.CA, *names: str) -> HttpsCollector:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(*names).configure_cert(context)
        server = cls(context)
        server._thread.start()
        return server

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def stop(self) -> None:
        self.stopping.set()
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: HttpsCollector

    def do_GET(self) -> None:
        self._answer(200, self.server.policy)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.server.stall:
            self.server.stopping.wait(60)
            return
        self.server.posts.append((self.path, self.headers["Content-Type"], body))
        self._answer(self.server.status, b"")
        self.server.posted.set()

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return None
