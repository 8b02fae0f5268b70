"""The asyncio SMTP driver: one task per connection over the sans-IO core in wire.py.

Owns I/O and per-connection state: reads under a deadline, feeds `SmtpConnection`, calls a
handler per event, and writes replies in order, flushed when the parser has consumed all
input (RFC 2920 §3.1: pipelined replies may be batched). Decisions come from policy.py,
message bodies (DATA, BDAT) are body.py's, storage is receive.py's, and the inbound
checks (checks/: SPF at RCPT, SPOOF_PROTECTION at MAIL, …) run through the pipeline at
each stage once the session's own rules accepted
the command: before the greeting, at MAIL, at each RCPT that is otherwise acceptable
(before the mailbox-full test), and after DATA (receive.py). Invariants:
- A client never sees a traceback: an unexpected exception becomes `451 4.3.0` with the
  traceback logged, and the connection goes on with the transaction reset.
- After STARTTLS every byte received in plaintext is dropped and all state is reset
  (RFC 3207 §4.2); a DATA body is never held in memory (it streams into the spool).
- Once `runtime.shutting_down` is set, the transaction in flight finishes; the next
  command (other than QUIT) or an idle wait gets `421 4.3.2` and the connection closes.
- Deadlines, not idle timers (issue 25 §6): each flushed reply starts one. The whole next
  command line (or SASL response) must arrive within SMTPD_TIMEOUT of it, a whole DATA body
  within SMTP_DATA_TIMEOUT of the 354; bytes trickling in do not extend either. On expiry:
  `421 4.4.2` and close.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from postroom.checks import Check, Pipeline, Stage
from postroom.closing import close_connection
from postroom.delivery.recipients import (
    Resolution,
    RoleRoutes,
    resolve_postmaster,
    resolve_recipient,
)
from postroom.delivery.transit import AcceptedRecipient, ClientInfo, ReceivedMessage
from postroom.errors import BadSyntax, Refused, TryLater
from postroom.metrics import note_smtp_rejection, note_smtp_transaction
from postroom.runtime import Runtime
from postroom.sasl import MECHANISMS, Challenge, Credentials, SaslExchange
from postroom.security.peer import client_peername
from postroom.smtp import policy, replies
from postroom.smtp.body import BodyReceiver, Transaction, added_capabilities
from postroom.smtp.policy import RecipientClass, SessionFacts, SmtpMode
from postroom.smtp.receive import (
    OutboundQueue,
    Receiver,
    new_queue_id,
    storage_reply,
    verdict_reply,
)
from postroom.smtp.replies import Reply
from postroom.smtp.wire import (
    Auth,
    AuthResponse,
    BadBdat,
    BadCommand,
    BadKind,
    BareNewline,
    Bdat,
    ChunkEnd,
    ConnectionClosed,
    Data,
    DataChunk,
    DataEnd,
    Ehlo,
    Event,
    Expn,
    Helo,
    Help,
    LineTooLong,
    Mail,
    Mode,
    NeedData,
    Noop,
    Quit,
    Rcpt,
    Rset,
    SizeExceeded,
    SmtpConnection,
    StartTls,
    Vrfy,
)
from postroom.wakers import Waker, Wakers

log = logging.getLogger("postroom.smtp")

READ_SIZE = 65536
# Postfix's smtpd_hard_error_limit: a client this confused is not going to recover.
MAX_ERRORS = 20
TLS_HANDSHAKE_TIMEOUT = 30.0  # STARTTLS, as the implicit-TLS listeners (app.py)

_BODY_MODES = (Mode.DATA, Mode.CHUNK)  # the client sends a body, not reading replies
_BAD_COMMAND_REPLIES: dict[BadKind, Callable[[str], Reply]] = {
    BadKind.UNRECOGNIZED: lambda reason: replies.UNRECOGNIZED,
    BadKind.SYNTAX: replies.syntax_error,
    BadKind.BARE_NEWLINE: lambda reason: replies.BARE_LF_COMMAND,
    BadKind.PARAMETER: replies.parameter_not_recognized,
}


class SmtpServer:
    """One listener's sessions: `asyncio.start_server(server.handle_connection, …)`.

    `checks`: the inbound checks in order (app.py's `inbound_checks`); each decides for
    itself which ports and clients it applies to. Tests of other concerns pass none and
    need no DNS.
    """

    def __init__(self, runtime: Runtime, mode: SmtpMode, outbound: OutboundQueue | None = None,
                 *, command_timeout: float | None = None, data_timeout: float | None = None,
                 checks: Sequence[Check] = ()) -> None:
        self.runtime = runtime
        self.mode = mode
        # Whole-command and whole-body deadlines (SMTPD_TIMEOUT, SMTP_DATA_TIMEOUT); RFC 5321
        # §4.5.3.2 asks for at least 5 minutes per command and 3 per DATA block. The
        # parameters are for tests.
        config = runtime.config
        self.command_timeout = float(config.smtpd_timeout if command_timeout is None
                                     else command_timeout)
        self.data_timeout = float(config.smtp_data_timeout if data_timeout is None
                                  else data_timeout)
        self.checks = Pipeline(checks)
        # A stage without checks costs nothing: not even the client facts are gathered.
        self.has_connect_checks = self.checks.has(Stage.CONNECT)
        self.has_mail_checks = self.checks.has(Stage.MAIL)
        self.has_rcpt_checks = self.checks.has(Stage.RCPT)
        self.receiver = Receiver(runtime, outbound, self.checks)
        self.wakers = Wakers(runtime.shutting_down)  # shutdown ends idle waits (wakers.py)

    async def handle_connection(self, reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter) -> None:
        session = SmtpSession(self, reader, writer)
        self.wakers.add(session.waker)
        try:
            await session.run()
        except (ConnectionError, ssl.SSLError, TimeoutError) as error:
            log.debug("client=%s connection ended: %r", session.client_ip, error)
        except Exception:
            log.exception("client=%s session failed", session.client_ip)
        finally:
            self.wakers.discard(session.waker)
            session.discard_spool()
            await close_connection(reader, writer)


class SmtpSession:
    def __init__(self, server: SmtpServer, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.runtime = server.runtime
        self.reader = reader
        self.writer = writer
        peer = client_peername(writer)  # behind a PROXY-protocol balancer: the real client
        self.client_ip: str = peer[0] if peer else "unknown"
        self.is_trusted = policy.is_trusted(self.client_ip, self.runtime.config.networks)
        self.conn = SmtpConnection(policy.bare_newline_policy(
            self.runtime.config.smtpd_forbid_bare_newline, self.is_trusted))
        self.helo_name: str | None = None
        self.is_esmtp = False
        self.auth_user = ""
        self.transaction: Transaction | None = None
        self.receiver = server.receiver
        self.body = BodyReceiver(self)  # DATA and BDAT (RFC 3030): smtp/body.py
        self.sasl: SaslExchange | None = None
        self.errors = 0
        self.messages = 0  # mail transactions started (SMTP_MAX_MESSAGES_PER_CONNECTION)
        self.is_closing = False
        self.waker = Waker()
        self._out: list[bytes] = []
        # loop.time() by which the client's next whole command line (or DATA body) must
        # have arrived; set again by every reply we flush.
        self.deadline = self._loop.time() + server.command_timeout
        self._handlers: dict[type, Callable[[Any], Awaitable[None]]] = {
            Helo: self.handle_helo, Ehlo: self.handle_helo, Mail: self.handle_mail,
            Rcpt: self.handle_rcpt, Data: self.body.handle_data,
            DataChunk: self.body.handle_chunk, DataEnd: self.body.handle_data_end,
            SizeExceeded: self.body.handle_size_exceeded,
            BareNewline: self.body.handle_bare_newline, Rset: self.handle_rset,
            Noop: self.handle_simple, Vrfy: self.handle_simple, Expn: self.handle_simple,
            Help: self.handle_simple, Quit: self.handle_quit, StartTls: self.handle_starttls,
            Auth: self.handle_auth, AuthResponse: self.handle_auth_response,
            LineTooLong: self.handle_error_event, BadCommand: self.handle_error_event,
            Bdat: self.body.handle_bdat, ChunkEnd: self.body.handle_chunk_end,
            BadBdat: self.body.handle_bad_bdat,
        }

    # -- plumbing ---------------------------------------------------------------------

    @property
    def _loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    @property
    def is_tls(self) -> bool:
        return self.writer.get_extra_info("ssl_object") is not None

    @property
    def facts(self) -> SessionFacts:
        return SessionFacts(self.server.mode, self.is_tls, bool(self.auth_user),
                            self.is_trusted)

    @property
    def size_limit(self) -> int:
        return self.runtime.config.message_size_limit

    def send(self, reply: Reply) -> None:
        self._out.append(reply.render())

    async def flush(self) -> None:
        """Send the queued replies; they start the deadline for what the client sends next
        (a whole body after 354: begin_data has switched the parser to DATA by then)."""
        if self._out:
            self.writer.write(b"".join(self._out))
            self._out.clear()
            await self.writer.drain()  # a client that stops reading: security/stalls.py
            self.restart_deadline()

    def restart_deadline(self) -> None:
        is_data = self.conn.mode is Mode.DATA
        seconds = self.server.data_timeout if is_data else self.server.command_timeout
        self.deadline = self._loop.time() + seconds
        if self.transaction is not None and self.transaction.is_chunking:
            # a BDAT body: chunk octets by its deadline, the lines between within it
            body = self.transaction.body_deadline
            is_chunk = self.conn.mode is Mode.CHUNK
            self.deadline = body if is_chunk else min(self.deadline, body)

    def body_deadline(self) -> float:
        """When a body starting now must have arrived (SMTP_DATA_TIMEOUT)."""
        return self._loop.time() + self.server.data_timeout

    async def run(self) -> None:
        if self.runtime.shutting_down.is_set():
            self.send(replies.SHUTTING_DOWN)
            await self.flush()
            return
        if self.server.has_connect_checks:
            verdict = await self.server.checks.on_connect(self.client_info())
            if verdict.is_refusal:
                self.send(verdict_reply(verdict))
                await self.flush()
                return
        self.send(replies.greeting(self.runtime.config.hostname))
        while not self.is_closing:
            event = self.conn.next_event()
            if isinstance(event, NeedData):
                await self.flush()
                data = await self.read()
                if data is None:
                    break
                self.conn.receive_data(data)
            elif isinstance(event, ConnectionClosed):
                break
            else:
                await self.dispatch(event)
        await self.flush()

    async def read(self) -> bytes | None:
        """The next bytes; None (after a 421) when the deadline passed, or at shutdown while
        idle. The deadline is not moved by what arrives: a client trickling one byte a
        second is cut off as surely as a silent one (issue 25 §6)."""
        remaining = self.deadline - self._loop.time()
        if remaining <= 0:
            self.send(replies.TIMEOUT)
            return None
        is_idle = self.conn.mode is not Mode.DATA and self.transaction is None
        if is_idle and self.runtime.shutting_down.is_set():
            self.send(replies.SHUTTING_DOWN)
            return None
        try:
            data = await self.waker.read(self.reader, READ_SIZE, remaining, wakeable=is_idle)
        except TimeoutError:
            self.send(replies.TIMEOUT)
            return None
        if data is None:  # woken: shutdown
            self.send(replies.SHUTTING_DOWN)
        return data

    async def dispatch(self, event: Event) -> None:
        if self.runtime.shutting_down.is_set() and self.is_idle and not isinstance(event, Quit):
            self.send(replies.SHUTTING_DOWN)
            self.is_closing = True
            return
        try:
            await self._handlers[type(event)](event)
        except Exception as error:  # rule 4: mapped here, once
            if self.conn.mode in _BODY_MODES and self.transaction is not None:
                # Mid-DATA the client is not reading replies: keep consuming the body
                # and answer once at its end (handle_data_end sees no spool → 451).
                log.exception("client=%s error while receiving data", self.client_ip)
                self.discard_spool()
                return
            self.send(self.reply_for_error(error))
            self.discard_spool()
            self.transaction = None
            self.sasl = None

    @property
    def is_idle(self) -> bool:
        return self.transaction is None and self.conn.mode is Mode.COMMAND

    def reply_for_error(self, error: Exception) -> Reply:
        if isinstance(error, BadSyntax):
            return replies.syntax_error(str(error))
        if isinstance(error, Refused):
            status = error.code if error.code and error.code.startswith("5.") else "5.0.0"
            return replies.reply(550, status, str(error))
        if isinstance(error, TryLater):  # a storage failure: 452 4.3.1 when full
            return storage_reply(error)
        log.exception("client=%s unexpected error", self.client_ip)
        return replies.LOCAL_ERROR

    def discard_spool(self) -> None:
        if self.transaction is not None and self.transaction.spool is not None:
            self.transaction.spool.discard()
            self.transaction.spool = None

    def refuse(self, reply: Reply) -> None:
        """A 5xx/4xx for a client mistake; too many of them end the session."""
        self.send(reply)
        note_smtp_rejection(reply.code, reply.status)
        self.errors += 1
        if self.errors >= MAX_ERRORS:
            self.send(replies.reply(421, "4.7.0", "Too many errors, closing connection"))
            self.is_closing = True

    # -- connection commands ------------------------------------------------------------

    async def handle_helo(self, command: Helo | Ehlo) -> None:
        self.reset_transaction()
        self.helo_name = command.domain
        self.is_esmtp = isinstance(command, Ehlo)
        hostname = self.runtime.config.hostname
        if isinstance(command, Ehlo):
            keywords = policy.capabilities(self.facts, self.size_limit)
            keywords += added_capabilities(self.is_tls)
            self.send(replies.ehlo(hostname, self.client_ip, keywords))
        else:
            self.send(replies.helo(hostname))

    async def handle_simple(self, command: Noop | Vrfy | Expn | Help) -> None:
        if isinstance(command, Noop):
            self.send(replies.OK)
        elif isinstance(command, Vrfy):
            self.send(replies.VRFY_CANNOT)  # RFC 5321 §3.5.3: no address harvesting
        elif isinstance(command, Expn):
            self.send(replies.EXPN_NOT_IMPLEMENTED)
        else:
            self.send(replies.HELP)

    async def handle_rset(self, command: Rset) -> None:
        self.reset_transaction()
        self.send(replies.RESET_OK)

    async def handle_quit(self, command: Quit) -> None:
        self.send(replies.BYE)
        self.is_closing = True

    async def handle_error_event(self, event: LineTooLong | BadCommand) -> None:
        if isinstance(event, LineTooLong):
            self.refuse(replies.LINE_TOO_LONG)
        else:
            self.refuse(_BAD_COMMAND_REPLIES[event.kind](event.reason))

    def reset_transaction(self) -> None:
        self.discard_spool()
        self.transaction = None

    async def handle_starttls(self, command: StartTls) -> None:
        if self.is_tls:
            self.refuse(replies.TLS_ALREADY)
            return
        self.send(replies.READY_TLS)
        await self.flush()
        # RFC 3207 §4.2 / CVE-2011-0411 class: nothing sent before the handshake may be
        # executed after it. Drop what the parser holds and what the StreamReader holds:
        # asyncio offers no public call for the latter, hence the guarded private access.
        self.conn.discard_buffered()
        buffered = getattr(self.reader, "_buffer", None)
        if isinstance(buffered, bytearray):
            buffered.clear()
        try:
            await self.writer.start_tls(self.runtime.tls.server_context,
                                        ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT)
        except (ssl.SSLError, ConnectionError, TimeoutError) as error:
            log.info("client=%s TLS handshake failed: %s", self.client_ip, error)
            self.is_closing = True
            return
        self.restart_deadline()  # the handshake's end is the answer EHLO follows
        self.reset_transaction()
        self.helo_name, self.is_esmtp, self.auth_user = None, False, ""

    # -- AUTH (RFC 4954) ----------------------------------------------------------------

    async def handle_auth(self, command: Auth) -> None:
        refusal = policy.check_auth_allowed(self.facts)
        if refusal is None and self.helo_name is None:
            refusal = replies.NEED_HELO
        if refusal is None and self.transaction is not None:
            refusal = replies.AUTH_IN_TRANSACTION
        if refusal is None and command.mechanism not in MECHANISMS:
            refusal = replies.AUTH_MECHANISM_UNKNOWN
        if refusal is not None:
            self.refuse(refusal)
            return
        self.sasl = SaslExchange(command.mechanism)
        await self.continue_auth(lambda exchange: exchange.start(command.initial))

    async def handle_auth_response(self, response: AuthResponse) -> None:
        if self.sasl is None:  # cannot happen: the parser only yields these after a 334
            self.send(replies.LOCAL_ERROR)
            return
        line = response.line
        await self.continue_auth(lambda exchange: exchange.step(line))

    async def continue_auth(self, step: Callable[[SaslExchange], Challenge | Credentials]
                            ) -> None:
        assert self.sasl is not None
        try:
            result = step(self.sasl)
        except BadSyntax as error:
            self.sasl = None
            is_cancel = "cancel" in str(error)
            self.refuse(replies.AUTH_CANCELLED if is_cancel else replies.AUTH_BAD_RESPONSE)
            return
        if isinstance(result, Challenge):
            self.send(replies.challenge(result.text))
            self.conn.expect_auth_response()
            return
        self.sasl = None
        await self.authenticate(result)

    async def authenticate(self, credentials: Credentials) -> None:
        account = None
        if credentials.authzid in ("", credentials.username):
            account = await self.runtime.accounts.authenticate(credentials.username,
                                                               credentials.password)
        if account is None:
            log.info("client=%s AUTH failed for %r", self.client_ip, credentials.username)
            self.refuse(replies.AUTH_FAILED)
            return
        self.auth_user = account.address
        log.info("client=%s AUTH ok user=%s", self.client_ip, account.address)
        self.send(replies.AUTH_OK)

    # -- the mail transaction -----------------------------------------------------------

    async def handle_mail(self, command: Mail) -> None:
        limit = self.runtime.config.smtp_max_messages_per_connection
        if limit and self.messages >= limit:
            self.send(replies.TOO_MANY_MESSAGES)
            self.is_closing = True
            return
        refusal = policy.check_mail_allowed(self.facts)
        if refusal is None and self.helo_name is None:
            refusal = replies.NEED_HELO
        if refusal is None and self.transaction is not None:
            refusal = replies.NESTED_MAIL
        if refusal is None:  # the store found its data damaged: no new transaction
            refusal = self.server.receiver.storage_refusal()
        if refusal is None:
            refusal = policy.check_size(command.params.size, self.size_limit)
        sender = str(command.address) if command.address else ""
        if refusal is None and not sender.isascii() and not command.params.is_smtputf8:
            refusal = replies.SMTPUTF8_NEEDED  # RFC 6531 §3.4
        if refusal is None and command.params.is_requiretls and not self.is_tls:
            refusal = replies.REQUIRETLS_WITHOUT_TLS  # RFC 8689 §4.1
        if refusal is not None:
            self.refuse(refusal)
            return
        client = self.client_info()  # fixed for the transaction: see Envelope
        if self.server.has_mail_checks:
            verdict = await self.server.checks.on_mail(client, sender)
            if verdict.is_refusal:
                self.refuse(verdict_reply(verdict))
                return
        self.transaction = Transaction(new_queue_id(), client, sender, command.params)
        self.messages += 1
        self.send(replies.SENDER_OK)

    async def handle_rcpt(self, command: Rcpt) -> None:
        transaction = self.transaction
        if transaction is None:
            self.refuse(replies.NEED_MAIL)
            return
        if len(transaction.recipients) >= policy.MAX_RECIPIENTS:
            self.send(replies.TOO_MANY_RECIPIENTS)  # RFC 5321 §4.5.3.1.10
            return
        address = str(command.address)
        if not address.isascii() and not transaction.params.is_smtputf8:
            self.refuse(replies.SMTPUTF8_NEEDED)
            return
        resolution = await self.resolve(command)
        reply = policy.decide_recipient(_classify(resolution), self.facts,
                                        self.server.receiver.has_outbound, address)
        if reply.is_positive and self.server.has_rcpt_checks:
            verdict = await self.server.checks.on_rcpt(transaction, address)
            reply = verdict_reply(verdict) if verdict.is_refusal else reply
        if reply.is_positive:  # issue 25: 452 4.2.2 for an account without room
            reply = await self.server.receiver.recipient_refusal(
                address, resolution.local, resolution.remote,
                transaction.params.size) or reply  # fmt: skip
        if not reply.is_positive:
            log.info("client=%s queue_id=%s reject rcpt=<%s>: %s %s", self.client_ip,
                     transaction.queue_id, address, reply.code, reply.text)
            self.refuse(reply)
            return
        transaction.recipients.append(AcceptedRecipient(
            address, command.params, resolution.local, resolution.remote))
        self.send(reply)

    async def resolve(self, command: Rcpt) -> Resolution:
        mailbox = command.address
        roles = RoleRoutes.from_config(self.runtime.config)  # postmaster@, abuse@
        if not mailbox.domain:  # RFC 5321 §4.1.1.3 bare <Postmaster>
            return await resolve_postmaster(self.runtime.store, roles,
                                            self.runtime.config.hostname)
        if mailbox.has_route:
            # §4.1.1.3: routes are ignored, but such a recipient is never local.
            return Resolution(str(mailbox), is_local_domain=False, remote=(str(mailbox),))
        return await resolve_recipient(self.runtime.store, str(mailbox), roles)

    async def complete_message(self, size: int) -> None:
        """The end of a body (DATA's end marker, BDAT LAST): store it, then reply."""
        transaction = self.transaction
        if transaction is None or transaction.spool is None:
            self.finish_transaction(replies.LOCAL_ERROR)
            return
        spool, transaction.spool = transaction.spool, None
        try:
            await spool.finish()
            message = ReceivedMessage(
                transaction.queue_id, transaction.client, transaction.sender,
                transaction.params, transaction.recipients, spool.path, size,
                dt.datetime.now(dt.UTC), body=spool.body, spf=transaction.spf,
                symbols=tuple(transaction.symbols))
            reply = await self.server.receiver.accept(message)
            transaction.filter_decision = message.filter_decision
        except Exception as error:
            spool.discard()
            reply = self.reply_for_error(error)
        self.finish_transaction(reply, size)

    def finish_transaction(self, reply: Reply, size: int = 0) -> None:
        """Send the DATA reply and write the one log line for the transaction."""
        transaction = self.transaction
        if transaction is not None:
            log.info("client=%s helo=%s user=%s queue_id=%s sender=<%s> rcpts=%s size=%d "
                     "result=%d %s%s", self.client_ip, self.helo_name, self.auth_user or "-",
                     transaction.queue_id, transaction.sender,
                     ",".join(f"<{r.address}>" for r in transaction.recipients), size,
                     reply.code, reply.text,
                     f" {transaction.filter_decision}" if transaction.filter_decision else "")
            note_smtp_transaction(self.server.mode.value, reply.code, reply.status,
                                  time.monotonic() - transaction.started)
        self.reset_transaction()
        self.send(reply)

    def client_info(self) -> ClientInfo:
        ssl_object = self.writer.get_extra_info("ssl_object")
        version = cipher = ""
        bits = 0
        if ssl_object is not None:
            version = ssl_object.version() or ""
            cipher_info = ssl_object.cipher()
            if cipher_info:
                cipher, bits = cipher_info[0], cipher_info[2] or 0
        return ClientInfo(self.client_ip, self.helo_name or "unknown", self.is_esmtp,
                          version, cipher, bits, self.auth_user, self.is_trusted,
                          self.server.mode.is_submission)


def _classify(resolution: Resolution) -> RecipientClass:
    if resolution.is_remote:
        return RecipientClass.REMOTE
    if resolution.is_unknown:
        return RecipientClass.UNKNOWN
    if not resolution.local:
        return RecipientClass.FORWARD
    return RecipientClass.LOCAL
