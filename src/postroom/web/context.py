"""What the web pages may use, handed in by app.py through `build_app`.

Owns `WebContext` — the web face's part of the composition root — and `context(request)`,
the one way a page reaches it (Starlette's `app.state.ctx`).

Invariant: pages get services from here, never by importing app.py or opening the store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.requests import Request

from postroom.clock import Clock, SystemClock
from postroom.config import Config
from postroom.runtime import Runtime

if TYPE_CHECKING:
    from postroom.accounts.totp import TwoFactor
    from postroom.outbound.worker import QueueWorker
    from postroom.security.bans import AuthGuard
    from postroom.web.dnsadvice import DomainAdvice


@dataclass(slots=True)
class WebContext:
    """The services of the web face. `runtime` holds the store, accounts (the guarded
    `AccountService`), TLS, resolver, …; `queue` is the outbound queue worker (None where
    no queue runs, e.g. in page tests without one)."""

    runtime: Runtime
    queue: QueueWorker | None
    config: Config
    guard: AuthGuard | None = None  # bans (security/bans.py): the admin bans page
    clock: Clock = field(default_factory=SystemClock)
    # The DNS advice of a domain (selftest/domainadvice.py's DomainAdvisor, from app.py:
    # selftest/ sits above this floor): the admin DNS page. None: the page says so.
    domains: DomainAdvice | None = None
    # /readyz (health.py): are the mail listeners bound? (app.py: its listener table);
    # None: nothing to wait for (page tests).
    listeners_bound: Callable[[], bool] | None = None
    # TOTP checks and their per-account failure budget (accounts/totp.py), made once per
    # process on first use by web/twofactor.py.
    two_factor: TwoFactor | None = None


def context(request: Request) -> WebContext:
    """The WebContext of the app serving `request`."""
    ctx: WebContext = request.app.state.ctx
    return ctx
