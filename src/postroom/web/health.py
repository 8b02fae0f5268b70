"""Metrics and health for orchestrators and Prometheus (issue 21).

Owns three routes:
- `/metrics`: Prometheus text exposition of metrics.py's registry (this process's
  counts, see there for SMTP_PROCESSES). The queue gauges are read from the store just
  before rendering (`queue_summary`: one aggregate query). Readable from
  WEB_METRICS_NETWORKS (default loopback) and TRUSTED_NETWORKS without a login, and by a
  logged-in admin from anywhere; anyone else gets 403 — counts of logins and rejections
  tell an attacker how they are doing.
- `/healthz`: liveness, 200 while the event loop answers at all; nothing is checked
  that a restart would not fix.
- `/readyz`: readiness, 200 when the store answers within `READY_TIMEOUT`, the mail
  listeners are bound and the server is not draining (SIGTERM); else 503 naming why.

Invariants: none of them needs a session or a CSRF token, and none writes anything; a
store that fails or hangs makes /readyz answer 503 within READY_TIMEOUT, and /metrics
still answers (with the queue gauges as they were).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from postroom.metrics import exposition, set_queue
from postroom.web.auth import current_user
from postroom.web.clients import client_address
from postroom.web.context import WebContext, context

log = logging.getLogger("postroom.web")
READY_TIMEOUT = 2.0  # seconds the store may take to answer /readyz or the queue gauges


def routes() -> list[BaseRoute]:
    return [
        Route("/metrics", metrics, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]


async def metrics(request: Request) -> Response:
    if not may_read_metrics(request):
        raise HTTPException(403, "Metrics are readable from WEB_METRICS_NETWORKS, or by an"
                                 " administrator.")
    await refresh_queue_gauges(context(request))
    body, content_type = exposition()
    return Response(body, headers={"content-type": content_type})


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok\n")


async def readyz(request: Request) -> Response:
    problems = await readiness_problems(context(request))
    if problems:
        return PlainTextResponse("not ready: " + "; ".join(problems) + "\n", status_code=503)
    return PlainTextResponse("ready\n")


def may_read_metrics(request: Request) -> bool:
    user = current_user(request)
    if user is not None and user.is_admin:
        return True
    config = context(request).config
    return _is_within(client_address(request), [*config.web_metrics_allowed,
                                                *config.networks])


async def refresh_queue_gauges(ctx: WebContext) -> None:
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            size, oldest = await ctx.runtime.store.queue_summary()
    except Exception as error:  # the other metrics are still worth answering
        log.warning("metrics: queue size not read: %s", error or type(error).__name__)
        return
    age = (ctx.clock.now() - oldest).total_seconds() if oldest is not None else 0.0
    set_queue(size, age)


async def readiness_problems(ctx: WebContext) -> list[str]:
    """Why this server should get no traffic now; empty when it is ready."""
    problems = []
    if ctx.runtime.shutting_down.is_set():
        problems.append("draining")
    if ctx.listeners_bound is not None and not ctx.listeners_bound():
        problems.append("mail listeners not bound")
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            await ctx.runtime.store.queue_summary()
    except TimeoutError:
        problems.append(f"store did not answer within {READY_TIMEOUT:g}s")
    except Exception as error:
        problems.append(f"store failed: {type(error).__name__}")
    return problems


def _is_within(address: str, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
               ) -> bool:
    try:
        parsed = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        parsed = parsed.ipv4_mapped
    return any(parsed in network for network in networks)
