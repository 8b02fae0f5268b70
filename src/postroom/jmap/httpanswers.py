"""The JSON error answers of JMAP over HTTP (issue 23): RFC 7807 problem details.

Owns `render_request_error` (RFC 8620 §3.6.1: a request refused as a whole, with the
status its RequestError carries) and `problem` (HTTP-level refusals JMAP leaves to HTTP:
401, 403, 404, 413). Invariant: every error answer of a /jmap/ route is
application/problem+json, never the console's HTML error page.
"""

from __future__ import annotations

import json

from starlette.responses import Response

from postroom.jmap.errors import RequestError

PROBLEM_JSON = "application/problem+json"


def render_request_error(error: RequestError, *, is_closing: bool = False) -> Response:
    """§3.6.1 problem details; `is_closing` when a body was left unread (a kept-alive
    connection cannot skip it: it is closed)."""
    return Response(json.dumps(error.render()), error.status,
                    headers={"connection": "close"} if is_closing else None,
                    media_type=PROBLEM_JSON)


def problem(status: int, detail: str, headers: dict[str, str] | None = None) -> Response:
    """A problem-details answer that is not one of JMAP's request errors."""
    body = {"type": "about:blank", "status": status, "detail": detail}
    return Response(json.dumps(body), status, headers=headers, media_type=PROBLEM_JSON)
