"""What JMAP over HTTP runs with (issue 23): `JmapContext`, built once by app.py, and
`CallContext`, what a method handler sees of one API request.

Owns:
- the account id mapping: an account's JMAP accountId is "a" + its store id in base 36
  (`jmap_account_id`, `parse_jmap_account_id`): stable, opaque and a valid Id (§1.2);
- the capability objects (`Capability`) advertised per URI, and `advertised`, which
  picks what the session shows: core, every capability the registry has a method for,
  and websocket once push is wired (`websocket_path`);
- `ConcurrencyGate`: the per-account maxConcurrentRequests / maxConcurrentUpload counts.

Invariants: a capability is advertised only when a registered method needs it (or for
websocket, when a push module set `websocket_path`), so a client never sees a promise
the server cannot keep; the gate's table holds only accounts with work in progress.
"""

from __future__ import annotations

import contextlib
import string
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from postroom.accounts.apitokens import ApiTokens
from postroom.clock import Clock, SystemClock
from postroom.config import Config
from postroom.jmap.core import CORE_CAPABILITY, Limits, MethodRegistry
from postroom.jmap.errors import MethodError, MethodErrorType
from postroom.runtime import Runtime
from postroom.security.bans import AuthGuard
from postroom.security.peer import peer_key
from postroom.store.api import Account

MAIL = "urn:ietf:params:jmap:mail"
SUBMISSION = "urn:ietf:params:jmap:submission"
VACATION_RESPONSE = "urn:ietf:params:jmap:vacationresponse"
WEBSOCKET = "urn:ietf:params:jmap:websocket"
_DIGITS = string.digits + string.ascii_lowercase
_MAX_ID_DIGITS = 13  # base 36 of a positive BIGINT


def jmap_account_id(account_id: int) -> str:
    """The accountId of the store's account `account_id`."""
    digits = ""
    value = account_id
    while True:
        value, digit = divmod(value, 36)
        digits = _DIGITS[digit] + digits
        if value == 0:
            return "a" + digits


def parse_jmap_account_id(text: str) -> int | None:
    """The store id an accountId names, or None when it names none."""
    body = text[1:]
    if not text.startswith("a") or not 1 <= len(body) <= _MAX_ID_DIGITS:
        return None
    if any(char not in _DIGITS for char in body) or (len(body) > 1 and body[0] == "0"):
        return None  # one spelling per account: no leading zeros
    return int(body, 36)


@dataclass(frozen=True, slots=True)
class Capability:
    """A capability's server-wide object (session "capabilities") and its object in each
    account (accountCapabilities)."""

    server: Mapping[str, Any] = field(default_factory=dict)
    account: Mapping[str, Any] = field(default_factory=dict)


def default_capabilities(config: Config) -> dict[str, Capability]:
    """The objects RFC 8621 (mail, submission, vacationresponse) defines, from our
    limits; a module registering the methods may replace its capability's entry."""
    return {
        MAIL: Capability(account={  # RFC 8621 §1.3.1
            "maxMailboxesPerEmail": None,
            "maxMailboxDepth": config.max_mailbox_depth,
            "maxSizeMailboxName": config.max_mailbox_name_length,
            "maxSizeAttachmentsPerEmail": config.message_size_limit or 50_000_000,
            "emailQuerySortOptions": ["receivedAt"],
            "mayCreateTopLevelMailbox": True,
        }),
        SUBMISSION: Capability(account={  # §1.3.2
            "maxDelayedSend": 0, "submissionExtensions": {}}),
        VACATION_RESPONSE: Capability(),  # §1.3.3: both empty
    }


def default_client_key(request: Request) -> str | None:
    """The TCP peer's ban key; app.py gives the web face's (X-Forwarded-For aware)."""
    return peer_key((request.client.host, request.client.port)) if request.client else None


class ConcurrencyGate:
    """At most `limit` things at once per account, refused (not queued) beyond: JMAP
    answers a request over maxConcurrentRequests with a limit error (RFC 8620 §3.6.1)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._busy: dict[int, int] = {}

    @contextlib.contextmanager
    def slot(self, account_id: int) -> Iterator[bool]:
        """Yields whether a slot was free; holds it for the block when it was."""
        busy = self._busy.get(account_id, 0)
        if busy >= self.limit:
            yield False
            return
        self._busy[account_id] = busy + 1
        try:
            yield True
        finally:
            left = self._busy[account_id] - 1
            if left:
                self._busy[account_id] = left
            else:
                del self._busy[account_id]


@dataclass(slots=True)
class JmapContext:
    """The services of JMAP over HTTP. `registry` holds every method (register before
    the web listener starts); `client_key` names a request's client for bans."""

    runtime: Runtime
    config: Config
    registry: MethodRegistry[CallContext]
    guard: AuthGuard | None = None
    client_key: Callable[[Request], str | None] = default_client_key
    limits: Limits = field(default_factory=Limits)
    clock: Clock = field(default_factory=SystemClock)
    capabilities: dict[str, Capability] = field(default_factory=dict)
    # Set by the push module (RFC 8887) when it serves WebSocket here, e.g. "/jmap/ws".
    websocket_path: str | None = None
    supports_push: bool = False
    tokens: ApiTokens = field(init=False)
    requests: ConcurrencyGate = field(init=False)
    uploads: ConcurrencyGate = field(init=False)
    uploads_swept_at: float = field(default=0.0, init=False)  # time.monotonic() of the last

    def __post_init__(self) -> None:
        self.capabilities = {**default_capabilities(self.config), **self.capabilities}
        self.tokens = ApiTokens(self.runtime.store, self.clock)
        self.requests = ConcurrencyGate(self.limits.max_concurrent_requests)
        self.uploads = ConcurrencyGate(self.limits.max_concurrent_upload)

    def advertised(self) -> list[str]:
        """The capability URIs the session shows, core first."""
        uris = sorted(self.registry.capabilities - {CORE_CAPABILITY})
        if self.websocket_path is not None:
            uris.append(WEBSOCKET)
        return [CORE_CAPABILITY, *uris]


@dataclass(frozen=True, slots=True)
class CallContext:
    """One API request as its method handlers see it (core.RequestContext)."""

    jmap: JmapContext
    account: Account  # the authenticated user's
    account_id: str  # its JMAP accountId
    session_state: str

    def require_account(self, account_id: object) -> Account:
        """The account a call's accountId names; accountNotFound for any other (§3.6.2):
        a user reaches their own account only."""
        if account_id != self.account_id:
            raise MethodError(MethodErrorType.ACCOUNT_NOT_FOUND)
        return self.account
