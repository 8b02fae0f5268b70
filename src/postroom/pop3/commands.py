"""POP3 command semantics: authentication, the maildrop snapshot, and the UPDATE state.

Owns what each command means once `pop3/wire.py` has parsed it (RFC 1939 §4-§7), for one
connection (`Pop3Session`), and the process-wide maildrop lock (`MaildropLocks`).

Invariants:
- Credentials are accepted only over TLS (STLS or the implicit-TLS port): RFC 2595 §4
  lets a server refuse plaintext login, and postroom always does.
- The maildrop is a snapshot of INBOX taken at login: message numbers and sizes never
  change during the session (RFC 1939 §5). A message expunged meanwhile through IMAP is
  reported with -ERR when retrieved, and silently skipped at QUIT.
- Deletion marks touch the store only at QUIT in the TRANSACTION state (RFC 1939 §6);
  a dropped connection, a timeout or a shutdown leaves the maildrop untouched.
- One POP3 session per account at a time (RFC 1939 §8 exclusive-access lock, answered with
  [IN-USE], RFC 2449 §8.1.1); the lock is released however the session ends.
- UIDL is "<uidvalidity>.<uid>" of the INBOX message: the identity IMAP uses, stable
  across sessions and restarts.
- RETR of a message up to RETR_WHOLE octets reads it in one blob read and answers it in
  one write (issue 22: per-message awaits and writes were the cost); a larger one is
  streamed from its file in RETR_CHUNK pieces, so memory per session stays bounded.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import IO

from postroom.errors import BadSyntax, Refused, TryLater
from postroom.pop3 import wire
from postroom.pop3.wire import Pop3Connection, Pop3State
from postroom.runtime import Runtime
from postroom.sasl import MECHANISMS, Challenge, Credentials, SaslAborted, SaslExchange
from postroom.store.api import Account, MessageRow

log = logging.getLogger(__name__)

RETR_CHUNK = 64 * 1024
RETR_WHOLE = 256 * 1024  # RETR of a message up to this size: read whole, one write
MAX_AUTH_FAILURES = 3


class After(enum.Enum):
    """What the driver does once the response is written."""

    CONTINUE = "continue"
    START_TLS = "start_tls"
    CLOSE = "close"


@dataclass(frozen=True, slots=True)
class StreamedMessage:
    """`+OK text` followed by a message body streamed from disk (RETR)."""

    text: str
    chunks: AsyncIterator[bytes]


@dataclass(frozen=True, slots=True)
class Outcome:
    response: wire.Response | StreamedMessage
    after: After = After.CONTINUE


@dataclass(frozen=True, slots=True)
class MaildropEntry:
    number: int  # RFC 1939 §5 message number, 1-based, fixed for the session
    uid: int
    size: int
    blob_id: str  # read directly at RETR/TOP: no row lookup per message (issue 22)


class MaildropLocks:
    """In-process exclusive access to a maildrop (RFC 1939 §8)."""

    def __init__(self) -> None:
        self._held: set[tuple[int, int]] = set()

    def acquire(self, key: tuple[int, int]) -> bool:
        if key in self._held:
            return False
        self._held.add(key)
        return True

    def release(self, key: tuple[int, int]) -> None:
        self._held.discard(key)


# Shared by the 110 and 995 listeners (two Pop3Server objects over one store).
LOCKS = MaildropLocks()


@dataclass(slots=True)
class Maildrop:
    """The INBOX snapshot of one session and its deletion marks."""

    mailbox_id: int
    uidvalidity: int
    entries: tuple[MaildropEntry, ...]
    deleted: set[int] = field(default_factory=set)

    @classmethod
    def from_rows(cls, mailbox_id: int, uidvalidity: int, rows: list[MessageRow]) -> Maildrop:
        entries = tuple(MaildropEntry(number, row.uid, row.size, row.blob_id)
                        for number, row in enumerate(rows, 1))
        return cls(mailbox_id, uidvalidity, entries)

    def entry(self, number: int) -> MaildropEntry:
        """A live (not deleted) message by number; -ERR otherwise (RFC 1939 §5)."""
        if not 1 <= number <= len(self.entries):
            raise Refused(f"no message {number}")
        if number in self.deleted:
            raise Refused(f"message {number} already deleted")
        return self.entries[number - 1]

    def live(self) -> list[MaildropEntry]:
        return [entry for entry in self.entries if entry.number not in self.deleted]

    def totals(self) -> tuple[int, int]:
        live = self.live()
        return len(live), sum(entry.size for entry in live)

    def unique_id(self, entry: MaildropEntry) -> str:
        return f"{self.uidvalidity}.{entry.uid}"

    def deleted_uids(self) -> list[int]:
        return sorted(self.entries[number - 1].uid for number in self.deleted)


async def _stream_file(handle: IO[bytes]) -> AsyncIterator[bytes]:
    try:
        while chunk := await asyncio.to_thread(handle.read, RETR_CHUNK):
            yield chunk
    finally:
        handle.close()


class Pop3Session:
    """Command handlers for one connection; the driver feeds parsed events in order."""

    def __init__(self, runtime: Runtime, conn: Pop3Connection, *, is_tls: bool,
                 peer: str = "-", locks: MaildropLocks = LOCKS) -> None:
        self.runtime = runtime
        self.conn = conn
        self.is_tls = is_tls
        self.peer = peer
        self._locks = locks
        self._user: str | None = None
        self._sasl: SaslExchange | None = None
        self._auth_failures = 0
        self._lock_key: tuple[int, int] | None = None
        self.account: Account | None = None
        self.maildrop: Maildrop | None = None

    async def handle(self, event: wire.Command | wire.SaslResponse) -> Outcome:
        match event:
            case wire.Capa():
                return self.handle_capa()
            case wire.Stls():
                return self.handle_stls()
            case wire.User() | wire.Pass() | wire.Auth() | wire.SaslResponse():
                return await self.handle_authorization(event)
            case wire.Quit():
                return await self.handle_quit()
        return await self.handle_transaction(event)

    async def handle_authorization(
        self, event: wire.User | wire.Pass | wire.Auth | wire.SaslResponse
    ) -> Outcome:
        match event:
            case wire.User():
                return self.handle_user(event)
            case wire.Pass():
                return await self.handle_pass(event)
            case wire.Auth():
                return await self.handle_auth(event)
        return await self.handle_sasl_response(event)

    async def handle_transaction(self, event: wire.Command) -> Outcome:
        drop = self._drop()
        match event:
            case wire.Stat():
                return self.handle_stat(drop)
            case wire.List():
                return self.handle_list(drop, event)
            case wire.Uidl():
                return self.handle_uidl(drop, event)
            case wire.Retr():
                return await self.handle_retr(drop, event)
            case wire.Top():
                return await self.handle_top(drop, event)
            case wire.Dele():
                return self.handle_dele(drop, event)
            case wire.Rset():
                return self.handle_rset(drop)
            case wire.Noop():
                return Outcome(wire.Ok())
        raise BadSyntax(f"{type(event).__name__.upper()} is not valid in this state")

    def close(self) -> None:
        """Release the maildrop lock without applying anything (no UPDATE state)."""
        if self._lock_key is not None:
            self._locks.release(self._lock_key)
            self._lock_key = None

    def tls_started(self) -> None:
        # RFC 2595 §4: after STLS the client must re-issue CAPA; nothing else carries over.
        self.is_tls = True
        self._user = None

    # -- AUTHORIZATION state ----------------------------------------------------------------

    def capabilities(self) -> list[str]:
        # RFC 2449 §6; RFC 3206 AUTH-RESP-CODE for the [AUTH] and [SYS/*] codes we send.
        caps = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
        if self.conn.state is Pop3State.AUTHORIZATION:
            if self.is_tls:
                caps += ["USER", "SASL " + " ".join(MECHANISMS)]
            else:
                caps.append("STLS")
        caps.append("IMPLEMENTATION postroom")
        return caps

    def handle_capa(self) -> Outcome:
        return Outcome(wire.MultiLine("capability list follows",
                                      wire.lines_body(self.capabilities())))

    def handle_stls(self) -> Outcome:
        if self.is_tls:
            raise Refused("TLS is already active")
        return Outcome(wire.Ok("begin TLS negotiation"), After.START_TLS)

    def _require_tls(self) -> None:
        if not self.is_tls:
            # RFC 2595 §4 (the POP3 counterpart of IMAP LOGINDISABLED).
            raise Refused("plaintext authentication is disabled; use STLS first", "AUTH")

    def handle_user(self, event: wire.User) -> Outcome:
        self._require_tls()
        self._user = event.name
        # Never tell whether the mailbox exists (RFC 1939 §13 security considerations).
        return Outcome(wire.Ok("send PASS"))

    async def handle_pass(self, event: wire.Pass) -> Outcome:
        self._require_tls()
        if self._user is None:
            raise BadSyntax("USER first")
        user, self._user = self._user, None
        return await self._login(user, event.password)

    async def handle_auth(self, event: wire.Auth) -> Outcome:
        self._require_tls()
        if event.mechanism is None:
            return Outcome(wire.MultiLine("SASL mechanisms follow", wire.lines_body(MECHANISMS)))
        exchange = SaslExchange(event.mechanism)
        initial = event.initial_response
        return await self._sasl_step(exchange, lambda: exchange.start(initial))

    async def handle_sasl_response(self, event: wire.SaslResponse) -> Outcome:
        exchange, self._sasl = self._sasl, None
        if exchange is None:
            raise BadSyntax("no authentication exchange in progress")
        return await self._sasl_step(exchange, lambda: exchange.step(event.text))

    async def _sasl_step(self, exchange: SaslExchange,
                         step: Callable[[], Challenge | Credentials]) -> Outcome:
        try:
            result = step()
        except SaslAborted:
            return Outcome(wire.Err("authentication cancelled"))  # RFC 5034 §4
        if isinstance(result, Challenge):
            self._sasl = exchange
            self.conn.expect_sasl_response()
            return Outcome(wire.Continuation(result.text))
        # RFC 4616 §2: acting as another user (authzid) is not supported.
        if result.authzid not in ("", result.username):
            return await self._fail_login(result.username)
        return await self._login(result.username, result.password)

    async def _login(self, user: str, password: str) -> Outcome:
        account = await self.runtime.accounts.authenticate(user, password)
        if account is None:
            return await self._fail_login(user)
        mailbox = await self.runtime.store.get_mailbox(account.id, "INBOX")
        if mailbox is None:
            raise TryLater(f"{account.address} has no INBOX")
        key = (id(self.runtime.store), mailbox.id)
        if not self._locks.acquire(key):
            # RFC 2449 §8.1.1: credentials fine, maildrop busy.
            raise Refused("maildrop already in use by another POP3 session", "IN-USE")
        self._lock_key = key
        try:
            rows = await self.runtime.store.list_messages(mailbox.id)
        except BaseException:
            self.close()
            raise
        self.account = account
        self.maildrop = Maildrop.from_rows(mailbox.id, mailbox.uidvalidity, rows)
        self.conn.enter(Pop3State.TRANSACTION)
        count, size = self.maildrop.totals()
        log.info("pop3 login %s from %s: %d messages", account.address, self.peer, count)
        return Outcome(wire.Ok(f"maildrop has {count} messages ({size} octets)"))

    async def _fail_login(self, user: str) -> Outcome:
        self._auth_failures += 1
        log.info("pop3 authentication failed for %r from %s", user[:100], self.peer)
        # Hanging up after a few failures slows password guessing down.
        after = After.CLOSE if self._auth_failures >= MAX_AUTH_FAILURES else After.CONTINUE
        return Outcome(wire.Err("Authentication failed", "AUTH"), after)

    # -- TRANSACTION state --------------------------------------------------------------------

    def _drop(self) -> Maildrop:
        if self.maildrop is None:
            raise BadSyntax("not valid before login")
        return self.maildrop

    def handle_stat(self, drop: Maildrop) -> Outcome:
        count, size = drop.totals()
        return Outcome(wire.Ok(f"{count} {size}"))  # RFC 1939 §5 drop listing

    def handle_list(self, drop: Maildrop, event: wire.List) -> Outcome:
        if event.number is not None:
            entry = drop.entry(event.number)
            return Outcome(wire.Ok(f"{entry.number} {entry.size}"))
        count, size = drop.totals()
        lines = (f"{entry.number} {entry.size}" for entry in drop.live())
        return Outcome(wire.MultiLine(f"{count} messages ({size} octets)",
                                      wire.lines_body(lines)))

    def handle_uidl(self, drop: Maildrop, event: wire.Uidl) -> Outcome:
        if event.number is not None:
            entry = drop.entry(event.number)
            return Outcome(wire.Ok(f"{entry.number} {drop.unique_id(entry)}"))
        lines = (f"{entry.number} {drop.unique_id(entry)}" for entry in drop.live())
        return Outcome(wire.MultiLine("unique-id listing follows", wire.lines_body(lines)))

    async def _read(self, entry: MaildropEntry) -> bytes:
        """The message's bytes. A message expunged since the snapshot (by IMAP) has lost
        its blob, unless another copy still names it: then the snapshot's bytes stand."""
        try:
            return await self.runtime.blobs.read(entry.blob_id)
        except FileNotFoundError as error:
            raise Refused(f"message {entry.number} was deleted by another session"
                          ) from error  # fmt: skip

    async def handle_retr(self, drop: Maildrop, event: wire.Retr) -> Outcome:
        entry = drop.entry(event.number)
        if entry.size <= RETR_WHOLE:  # read at once (a body row: no thread hop), one write
            return Outcome(wire.MultiLine(f"{entry.size} octets", await self._read(entry)))
        try:
            open_blob = await self.runtime.blobs.opener([entry.blob_id])
            handle = await asyncio.to_thread(open_blob, entry.blob_id)  # closed by _stream_file
        except FileNotFoundError as error:
            raise Refused(f"message {entry.number} was deleted by another session") from error
        return Outcome(StreamedMessage(f"{entry.size} octets", _stream_file(handle)))

    async def handle_top(self, drop: Maildrop, event: wire.Top) -> Outcome:
        entry = drop.entry(event.number)
        return Outcome(wire.MultiLine("top of message follows",
                                      wire.top_of_message(await self._read(entry), event.lines)))

    def handle_dele(self, drop: Maildrop, event: wire.Dele) -> Outcome:
        entry = drop.entry(event.number)
        drop.deleted.add(entry.number)
        return Outcome(wire.Ok(f"message {entry.number} deleted"))

    def handle_rset(self, drop: Maildrop) -> Outcome:
        drop.deleted.clear()
        count, size = drop.totals()
        return Outcome(wire.Ok(f"maildrop has {count} messages ({size} octets)"))

    # -- QUIT and the UPDATE state ------------------------------------------------------------

    async def handle_quit(self) -> Outcome:
        if self.conn.state is not Pop3State.TRANSACTION:
            return Outcome(wire.Ok("postroom POP3 server signing off"), After.CLOSE)
        self.conn.enter(Pop3State.UPDATE)  # RFC 1939 §6
        drop = self._drop()
        uids = drop.deleted_uids()
        try:
            if uids:
                # UIDs already expunged through IMAP are simply not found: nothing to do.
                await self.runtime.store.expunge(drop.mailbox_id, uids)
        except Exception as error:
            if isinstance(error, TryLater):  # storage full or damaged: the store logged it
                log.warning("pop3 QUIT could not remove messages of %s: %s", self.peer, error)
            else:
                log.exception("pop3 QUIT could not remove messages of %s", self.peer)
            # RFC 1939 §6: -ERR when some deleted messages were not removed.
            return Outcome(wire.Err("some deleted messages not removed", "SYS/TEMP"),
                           After.CLOSE)
        finally:
            self.close()
        count, _ = drop.totals()
        return Outcome(wire.Ok(f"postroom POP3 server signing off ({count} messages left)"),
                       After.CLOSE)
