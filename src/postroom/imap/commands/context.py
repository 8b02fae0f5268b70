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

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from postroom.errors import Refused
from postroom.imap.selected import (
    ExistsUpdate,
    ExpungeUpdate,
    FlagsUpdate,
    KeywordsUpdate,
    SelectedMailbox,
    render_mailbox_flags,
)
from postroom.imap.wire.connection import ConnectionState, ImapConnection
from postroom.imap.wire.responses import (
    Atom,
    Value,
    render_exists,
    render_expunge,
    render_fetch,
    render_recent,
    render_untagged_status,
    render_vanished,
)
from postroom.runtime import Runtime
from postroom.store.api import Account, Change
from postroom.store.changes import Subscription


class SessionIO(Protocol):
    async def write(self, data: bytes) -> None: ...
    async def read_line(self) -> bytes: ...


class ChangeListener(Protocol):
    """Hears every change-feed event the session drains (NOTIFY, imap/commands/notify.py);
    `is_overflow`: the subscription's queue was full, so events were lost."""

    def note(self, changes: Sequence[Change], is_overflow: bool) -> None: ...


class ResultUpdates(Protocol):
    """Live SEARCH/SORT results (RFC 5267 §4), told of each batch of updates."""

    async def send_removals(self, ctx: Context) -> None: ...
    async def send(self, ctx: Context) -> None: ...


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
    pending_output: bytes = b""  # untagged lines `write` sends first (enable_condstore)
    is_compressed: bool = False  # COMPRESS=DEFLATE is on (RFC 4978), set by the session
    notify: ChangeListener | None = None  # NOTIFY SET in force (RFC 5465)
    # RFC 5267 UPDATE contexts of SEARCH/SORT (imap/commands/resultcontext.py).
    result_contexts: ResultUpdates | None = None

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
        """A CONDSTORE-enabling command was used (RFC 7162 §3.1). The first one in a
        selected mailbox also reports `OK [HIGHESTMODSEQ n]`, ahead of its own output."""
        if "CONDSTORE" not in self.enabled and self.selected is not None:
            self.pending_output += render_untagged_status(
                "OK", "highest mod-sequence", "HIGHESTMODSEQ", (self.selected.baseline,))
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
        if self.pending_output:  # untagged lines due before anything else is written
            data, self.pending_output = self.pending_output + data, b""
        if data:
            await self.io.write(data)

    async def announce_keywords(self) -> None:
        """Send FLAGS and PERMANENTFLAGS again when the selected view holds a keyword the
        client was not told of, before any FETCH can show it (issue 17)."""
        update = None if self.selected is None else self.selected.take_keywords_update()
        if update is not None:
            await self.write(render_mailbox_flags(update))

    async def send_updates(self, *, may_expunge: bool) -> None:
        """Refresh the selected view when it may be stale and send what changed."""
        view = self.selected
        if view is None:
            return
        if self.is_selected_stale:
            await view.refresh(self.runtime.store, self.runtime.feed)
            self.is_selected_stale = False  # only once the refresh worked
        is_rev1 = not self.is_rev2
        if self.result_contexts is not None and may_expunge:
            await self.result_contexts.send_removals(self)  # RFC 5267 §4.3.4: before EXPUNGE
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
            elif isinstance(update, KeywordsUpdate):
                chunks.append(render_mailbox_flags(update))
        if chunks or self.pending_output:
            await self.write(b"".join(chunks))
        if self.result_contexts is not None and may_expunge:
            await self.result_contexts.send(self)  # RFC 5267 §4.3: after EXPUNGE/EXISTS

    def note_changes(self) -> None:
        """Drain the change feed; mark the selected view stale if its mailbox changed;
        tell NOTIFY (if in force) about every change."""
        if self.subscription is None or (self.selected is None and self.notify is None):
            return
        changes = self.subscription.drain()
        is_overflow = len(changes) >= self.subscription.queue.maxsize - 1
        if self.notify is not None and changes:
            self.notify.note(changes, is_overflow)
        if self.selected is None:
            return
        mailbox_id = self.selected.mailbox_id
        if is_overflow:
            # A full queue drops events, possibly ours: re-read to be sure.
            self.is_selected_stale = True
        view = self.selected
        # An event the view already covers (our own write, applied directly) needs no re-read.
        if any(change.mailbox_id == mailbox_id and not view.covers(change.modseq)
               for change in changes):  # fmt: skip
            self.is_selected_stale = True
