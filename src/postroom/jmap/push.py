"""JMAP push (issue 23, RFC 8620 §7): StateChange objects, the per-account watch both push
channels share, their connection limits, and the EventSource channel (§7.3) at
GET /jmap/eventsource/?types=…&closeafter=state|no&ping=N.

Owns:
- `StateWatch`: one channel's view of one account. It subscribes to the change feed
  (store/changes.py) before it reads the baseline state, so no change falls between the
  two; on each feed event it re-reads `store.jmap_state` and says which types' states
  moved. Email, Mailbox and Thread share the account's one state string (decision 0057,
  RFC 8620 allows it), so they move together; EmailDelivery (RFC 8621 §1.5) moves, to the
  same string, when the feed reports an "append" into the INBOX (see `is_delivery`).
- Coalescing: a watch reads the store at most once per COALESCE seconds; changes arriving
  meanwhile are drained together, so a burst of deliveries gives one StateChange.
- `PushGate`: push connections (EventSource and WebSocket together) per account and per
  client address, refused beyond (429).
- The EventSource stream: `state` events carry a StateChange filtered by `types`, with
  the state as the SSE id (a reconnecting EventSource sends it back as Last-Event-ID: a
  change missed in between is pushed at once); `ping` events every `ping` seconds since
  the last event, the interval clamped to [MIN_PING, MAX_PING] (§7.3: a server may clamp,
  but with a minimum of at most 30 s and a maximum of at least 300 s), none for 0;
  closeafter=state ends the response after the first state event (long polling).

Invariants: a watch's subscription and its shutdown task live exactly as long as its
channel — `EventStream.__call__` closes them however the response ends (client gone,
server shutting down, closeafter, an error); a StateChange is sent only when a state
differs from the one last sent on that channel; the stream ends when
`runtime.shutting_down` is set.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from postroom.jmap.context import JmapContext, jmap_account_id
from postroom.jmap.httpanswers import problem
from postroom.jmap.httpauth import guarded
from postroom.loops import wait_event
from postroom.runtime import Runtime
from postroom.store.api import Account, Change

STATE_TYPES = ("Email", "Mailbox", "Thread")  # one store state for the three (0057)
DELIVERY_TYPE = "EmailDelivery"  # RFC 8621 §1.5: push-only, no /get
DATA_TYPES = (*STATE_TYPES, DELIVERY_TYPE)
DELIVERY_KIND = "append"  # the feed's kind for a message added to a mailbox
COALESCE = 0.25  # seconds: at most one store read (so one StateChange) per watch per this
MIN_PING, MAX_PING = 10, 600  # seconds: the clamp of an EventSource's ping interval
MAX_PUSH_PER_ACCOUNT = 8  # push connections (EventSource + WebSocket) per account
MAX_PUSH_PER_CLIENT = 16  # push connections per client address, all accounts together
SHUTDOWN_TASK = "jmap-push-shutdown"  # the name of each watch's shutdown task
EVENT_SOURCE_PATH = "/jmap/eventsource/"
_MAX_TYPES_PARAM = 1024  # characters of the types parameter read


# -- StateChange (§7.1) -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StateChange:
    """New states of some types of one account (§7.1 StateChange)."""

    account_id: str  # the JMAP accountId
    states: Mapping[str, str]  # type name → its new state string

    def render(self, push_state: str | None = None) -> dict[str, Any]:
        """The JSON object; `push_state` only over WebSocket (RFC 8887 §4.3.5.1)."""
        rendered: dict[str, Any] = {"@type": "StateChange",
                                    "changed": {self.account_id: dict(self.states)}}
        if push_state is not None:
            rendered["pushState"] = push_state
        return rendered

    def only(self, types: frozenset[str] | None) -> StateChange | None:
        """The change restricted to `types` (None: all), or None when nothing is left."""
        kept = {name: state for name, state in self.states.items()
                if types is None or name in types}
        return StateChange(self.account_id, kept) if kept else None


def is_delivery(change: Change, inbox_id: int | None) -> bool:
    """Does this feed event count as new mail (RFC 8621 §1.5 EmailDelivery)?

    The feed says "append" for every message added — delivery, but also IMAP APPEND,
    COPY and MOVE — and not who added it. An append into the INBOX is taken as a
    delivery: that is where SMTP delivers, and where a user's own appends (Sent, Drafts)
    and filing (moves into folders) do not go; Sieve fileinto elsewhere and Junk filing
    are therefore not announced, and a move back into the INBOX is."""
    return inbox_id is not None and change.mailbox_id == inbox_id and DELIVERY_KIND in change.kinds


# -- the watch -----------------------------------------------------------------------------


class StateWatch:
    """One push channel's view of one account's states; `open` it, `close` it."""

    def __init__(self, runtime: Runtime, account: Account) -> None:
        self._runtime = runtime
        self.account = account
        self.account_id = jmap_account_id(account.id)
        self.state = ""  # the account's state as last read
        self.is_closing = False  # the server is shutting down, or the watch was closed
        self._inbox_id: int | None = None
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._last_read = self._loop.time() - COALESCE
        # Subscribed before the baseline is read (`open`): a change between is not lost.
        self._subscription = runtime.feed.subscribe(account.id)
        self._subscription.on_change = self._wake.set
        self._shutdown = asyncio.create_task(self._follow_shutdown(), name=SHUTDOWN_TASK)

    @classmethod
    async def open(cls, runtime: Runtime, account: Account) -> StateWatch:
        watch = cls(runtime, account)
        try:
            inbox = await runtime.store.get_mailbox(account.id, "INBOX")
            watch._inbox_id = inbox.id if inbox is not None else None
            watch.state = await runtime.store.jmap_state(account.id)
        except BaseException:
            watch.close()
            raise
        return watch

    async def _follow_shutdown(self) -> None:
        await self._runtime.shutting_down.wait()
        self.is_closing = True
        self._wake.set()

    def close(self) -> None:
        """Unsubscribe and stop the shutdown task (idempotent)."""
        self.is_closing = True
        self._subscription.close()
        self._shutdown.cancel()
        self._wake.set()

    def everything(self) -> StateChange:
        """Every state type at the current state (a client that may have missed some)."""
        return StateChange(self.account_id, dict.fromkeys(STATE_TYPES, self.state))

    async def next_change(self, within: float | None) -> StateChange | None:
        """Waits up to `within` seconds (None: no limit) for the account to change: the
        types whose state moved since the last call (possibly none), or None when the
        time passed, or the watch closed, first."""
        if not await wait_event(self._wake, within):
            return None
        if self.is_closing:
            return None
        delay = self._last_read + COALESCE - self._loop.time()
        if delay > 0:
            await asyncio.sleep(delay)  # pacing, not synchronisation: the burst gathers
            if self.is_closing:
                return None
        # Clear, then drain, with no await between: a later change sets the event again.
        self._wake.clear()
        changes = self._subscription.drain()
        return await self._read(changes)

    async def _read(self, changes: Iterable[Change]) -> StateChange:
        state = await self._runtime.store.jmap_state(self.account.id)
        self._last_read = self._loop.time()
        moved: dict[str, str] = {}
        if state != self.state:
            moved = dict.fromkeys(STATE_TYPES, state)
        if any(is_delivery(change, self._inbox_id) for change in changes):
            moved[DELIVERY_TYPE] = state
        self.state = state
        return StateChange(self.account_id, moved)


# -- connection limits -----------------------------------------------------------------------


class PushLease:
    """One admitted push connection; `release` it when the connection ends."""

    def __init__(self, gate: PushGate, account_id: int, client: str | None) -> None:
        self._gate = gate
        self.account_id = account_id
        self.client = client
        self._is_held = True

    def release(self) -> None:
        if self._is_held:
            self._is_held = False
            self._gate.release(self)


class PushGate:
    """Counts open push connections per account and per client address."""

    def __init__(self, per_account: int | None = None, per_client: int | None = None) -> None:
        self.per_account = MAX_PUSH_PER_ACCOUNT if per_account is None else per_account
        self.per_client = MAX_PUSH_PER_CLIENT if per_client is None else per_client
        self._accounts: dict[int, int] = {}
        self._clients: dict[str, int] = {}

    def admit(self, account_id: int, client: str | None) -> PushLease | None:
        """A lease, or None when the account or the client has too many already."""
        if self._accounts.get(account_id, 0) >= self.per_account:
            return None
        if client is not None and self._clients.get(client, 0) >= self.per_client:
            return None
        self._accounts[account_id] = self._accounts.get(account_id, 0) + 1
        if client is not None:
            self._clients[client] = self._clients.get(client, 0) + 1
        return PushLease(self, account_id, client)

    def release(self, lease: PushLease) -> None:
        _decrement(self._accounts, lease.account_id)
        if lease.client is not None:
            _decrement(self._clients, lease.client)

    def open_count(self, account_id: int) -> int:
        return self._accounts.get(account_id, 0)


def _decrement(counts: dict[Any, int], key: Any) -> None:
    left = counts.get(key, 0) - 1
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)


def refuse_busy(gate: PushGate) -> Response:
    return problem(429, f"Too many push connections (at most {gate.per_account} per"
                        f" account and {gate.per_client} per address).")


# -- EventSource (§7.3) ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventSourceOptions:
    types: frozenset[str] | None  # None: every type ("*")
    close_after_state: bool
    ping: int  # seconds, already clamped; 0: no pings


def parse_event_source_query(params: QueryParams) -> EventSourceOptions:
    """The three query parameters of §7.3; ValueError names a malformed one. Absent ones
    take the lenient defaults: all types, closeafter=no, no pings."""
    types_text = params.get("types", "*")[:_MAX_TYPES_PARAM]
    types = None if types_text.strip() == "*" else frozenset(
        name.strip() for name in types_text.split(",") if name.strip())
    close_after = params.get("closeafter", "no")
    if close_after not in ("state", "no"):
        raise ValueError("closeafter must be 'state' or 'no'")
    ping_text = params.get("ping", "0")
    if not ping_text.isascii() or not ping_text.isdigit() or len(ping_text) > 10:
        raise ValueError("ping must be a number of seconds")
    ping = int(ping_text)
    if ping:
        ping = min(max(ping, MIN_PING), MAX_PING)
    return EventSourceOptions(types, close_after == "state", ping)


def render_event(name: str, data: Mapping[str, Any], event_id: str | None = None) -> bytes:
    """One server-sent event (HTML "text/event-stream"): JSON data on one line."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data)}\n\n".encode()


class EventStream(StreamingResponse):
    """The text/event-stream answer; releases its watch and lease however it ends."""

    def __init__(self, watch: StateWatch, lease: PushLease, options: EventSourceOptions,
                 last_event_id: str | None) -> None:
        super().__init__(self._events(), media_type="text/event-stream",
                         headers={"x-accel-buffering": "no"})  # proxies: do not buffer
        self.watch = watch
        self.lease = lease
        self.options = options
        self.last_event_id = last_event_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.close()

    def close(self) -> None:
        self.watch.close()
        self.lease.release()

    async def _events(self) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        watch, options = self.watch, self.options
        if self.last_event_id is not None and self.last_event_id != watch.state:
            # A reconnecting EventSource missed something since its last event.
            missed = watch.everything().only(options.types)
            if missed is not None:
                yield self._state_event(missed)
                if options.close_after_state:
                    return
        last_event = loop.time()
        while True:
            due = max(0.0, last_event + options.ping - loop.time()) if options.ping else None
            change = await watch.next_change(due)
            if watch.is_closing:
                return
            if change is None:
                yield render_event("ping", {"interval": options.ping})
                last_event = loop.time()
                continue
            shown = change.only(options.types)
            if shown is None:
                continue
            yield self._state_event(shown)
            last_event = loop.time()
            if options.close_after_state:
                return

    def _state_event(self, change: StateChange) -> bytes:
        return render_event("state", change.render(), event_id=self.watch.state)


async def open_event_source(ctx: JmapContext, gate: PushGate, request: Request,
                            account: Account) -> Response:
    """The EventSource response of an authenticated request."""
    try:
        options = parse_event_source_query(request.query_params)
    except ValueError as error:
        return problem(400, str(error))
    lease = gate.admit(account.id, ctx.client_key(request))
    if lease is None:
        return refuse_busy(gate)
    try:
        watch = await StateWatch.open(ctx.runtime, account)
    except BaseException:
        lease.release()
        raise
    return EventStream(watch, lease, options, request.headers.get("last-event-id"))


def event_source_endpoint(ctx: JmapContext, gate: PushGate
                          ) -> Callable[[Request], Awaitable[Response]]:
    """The route's endpoint: guarded as every JMAP route (httpauth), then the stream."""

    async def stream(ctx: JmapContext, request: Request, account: Account) -> Response:
        return await open_event_source(ctx, gate, request, account)

    return guarded(ctx, stream)
