"""What every IMAP command handler works with: the session's state and its output.

Owns `Context` (one per connection: runtime, connection state, account, the selected
view, ENABLEd extensions, the change-feed subscription) and `Done` (a handler's tagged
completion). Handlers write untagged responses through `Context.write` as they go, so a
large FETCH streams instead of being built in memory; the session writes the tagged line.

Invariants:
- Handlers never touch the socket: output goes through `SessionIO.write`, the one extra
  line AUTHENTICATE needs through `SessionIO.read_line`.
- Extensions a client ENABLEs (or switches on by use, RFC 7162 §3.1) live in `enabled`,
  upper-case: IMAP4REV2 (no \\Recent, ESEARCH answers), UTF8=ACCEPT, CONDSTORE (MODSEQ
  in FETCH answers), QRESYNC (VANISHED instead of EXPUNGE).
- Errors are raised in the shared vocabulary (BadSyntax / Refused / TryLater) and mapped
  to BAD / NO [code] / NO [UNAVAILABLE] by the session, in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from postroom.errors import Refused
from postroom.imap.selected import (
    ExistsUpdate,
    ExpungeUpdate,
    FlagsUpdate,
    SelectedMailbox,
)
from postroom.imap.wire.connection import ConnectionState, ImapConnection
from postroom.imap.wire.responses import (
    Atom,
    Value,
    render_exists,
    render_expunge,
    render_fetch,
    render_recent,
    render_vanished,
)
from postroom.runtime import Runtime
from postroom.store.api import Account
from postroom.store.changes import Subscription


class SessionIO(Protocol):
    async def write(self, data: bytes) -> None: ...
    async def read_line(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Done:
    """A handler's tagged answer: `tag OK [code args] text` (or NO/BAD)."""

    text: str = "completed"
    code: str | None = None
    code_args: tuple[Value, ...] = ()
    status: str = "OK"


@dataclass(slots=True)
class Context:
    runtime: Runtime
    conn: ImapConnection
    io: SessionIO
    is_tls: bool
    is_implicit_tls: bool
    # What CAPABILITY lists once logged in, from the command specs (imap/commands/__init__.py).
    capabilities_after_login: tuple[str, ...]
    account: Account | None = None
    selected: SelectedMailbox | None = None
    enabled: set[str] = field(default_factory=set)
    subscription: Subscription | None = None
    # Set when the change feed reported something about the selected mailbox.
    is_selected_stale: bool = False

    # -- state ------------------------------------------------------------------------
    @property
    def state(self) -> ConnectionState:
        return self.conn.state

    @state.setter
    def state(self, value: ConnectionState) -> None:
        self.conn.state = value

    @property
    def is_rev2(self) -> bool:
        return "IMAP4REV2" in self.enabled

    @property
    def is_condstore(self) -> bool:
        """RFC 7162 §3.1: once on, FETCH answers carry MODSEQ."""
        return "CONDSTORE" in self.enabled

    @property
    def is_qresync(self) -> bool:
        """RFC 7162 §3.2: VANISHED replaces EXPUNGE once QRESYNC is enabled."""
        return "QRESYNC" in self.enabled

    def enable_condstore(self) -> None:
        """A CONDSTORE-enabling command was used (RFC 7162 §3.1)."""
        self.enabled.add("CONDSTORE")

    @property
    def is_utf8(self) -> bool:
        """Mailbox names and strings go out as UTF-8 (RFC 9051 §5.1, RFC 6855 §3)."""
        return self.conn.is_utf8

    @property
    def account_id(self) -> int:
        if self.account is None:
            raise Refused("not authenticated")
        return self.account.id

    def require_selected(self) -> SelectedMailbox:
        if self.selected is None:
            raise Refused("no mailbox selected")
        return self.selected

    def capabilities(self) -> list[str]:
        """RFC 9051 §7.2.2: what we can do in the current state over this transport."""
        if self.state is ConnectionState.NOT_AUTHENTICATED:
            caps = ["IMAP4rev2", "IMAP4rev1", "LITERAL+", "SASL-IR", "ENABLE", "ID"]
            if self.is_tls:
                caps += ["AUTH=PLAIN", "AUTH=LOGIN"]
            else:
                caps += ["STARTTLS", "LOGINDISABLED"]  # RFC 9051 §6.2.3 before TLS
            return caps
        limit = self.runtime.config.message_size_limit
        caps = list(self.capabilities_after_login)
        if limit:
            caps.append(f"APPENDLIMIT={limit}")
        return caps

    # -- output -----------------------------------------------------------------------
    async def write(self, data: bytes) -> None:
        await self.io.write(data)

    async def send_updates(self, *, may_expunge: bool) -> None:
        """Refresh the selected view when it may be stale and send what changed."""
        view = self.selected
        if view is None:
            return
        if self.is_selected_stale:
            await view.refresh(self.runtime.store)
            self.is_selected_stale = False  # only once the refresh worked
        is_rev1 = not self.is_rev2
        chunks: list[bytes] = []
        updates = view.take_updates(may_expunge=may_expunge, is_rev1=is_rev1)
        vanished = [u.uid for u in updates if isinstance(u, ExpungeUpdate)]
        if vanished and self.is_qresync:
            chunks.append(render_vanished(vanished))  # RFC 7162 §3.2.10
        for update in updates:
            if isinstance(update, ExpungeUpdate):
                if not self.is_qresync:
                    chunks.append(render_expunge(update.seq))
            elif isinstance(update, ExistsUpdate):
                chunks.append(render_exists(update.count))
                if is_rev1:
                    chunks.append(render_recent(update.recent))
            elif isinstance(update, FlagsUpdate):
                items: list[tuple[str, Value]] = [
                    ("UID", update.uid), ("FLAGS", [Atom(flag) for flag in update.flags])]
                if self.is_condstore:
                    items.append(("MODSEQ", [update.modseq]))
                chunks.append(render_fetch(update.seq, items))
        if chunks:
            await self.write(b"".join(chunks))

    def note_changes(self) -> None:
        """Drain the change feed; mark the selected view stale if its mailbox changed."""
        if self.subscription is None or self.selected is None:
            return
        mailbox_id = self.selected.mailbox_id
        changes = self.subscription.drain()
        if len(changes) >= self.subscription.queue.maxsize - 1:
            # A full queue drops events, possibly ours: re-read to be sure.
            self.is_selected_stale = True
        view = self.selected
        # An event the view already covers (our own write, applied directly) needs no re-read.
        if any(change.mailbox_id == mailbox_id and not view.covers(change.modseq)
               for change in changes):  # fmt: skip
            self.is_selected_stale = True
