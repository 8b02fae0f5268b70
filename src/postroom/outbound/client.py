"""The outbound SMTP client: one session to one chosen server address (RFC 5321 §3, §4).

Owns everything about talking to a remote MX or the relay host once routing has picked
an IP address: dialling it ourselves (OUTBOUND_SMTP_PORT, from OUTBOUND_BIND_ADDRESS when
set), EHLO with our host name (HELO when EHLO is refused, RFC 5321 §4.1.1.1),
opportunistic STARTTLS (RFC 3207) without certificate checks, AUTH to the relay host,
and transactions that report one reply per recipient, pipelined (RFC 2920) when the
server offers it, the body sent with BDAT (RFC 3030) when the server offers CHUNKING
(always for BODY=BINARYMIME, which a server without CHUNKING and BINARYMIME cannot take),
and the DSN parameters (RFC 3461 NOTIFY, ORCPT, RET, ENVID) passed on to a server that
offers DSN. The wire grammar is in outbound/replyparse.py (sans-IO); this module moves
bytes and runs the timeouts. (It is ours because aiosmtplib cannot pipeline.)

Invariants:
- TLS is opportunistic by default: a certificate is never verified, because without
  MTA-STS or DANE (RFC 8461 / RFC 7672) nothing says which certificate is right, and
  refusing would only push the mail to plaintext. A failed handshake is retried once in
  plaintext, as Postfix does at `smtp_tls_security_level = may`.
- A session opened with `ClientSettings.requires_tls` (RFC 8689 REQUIRETLS mail) is
  STARTTLS with a certificate that verifies against the CA store (SMTP_TLS_CAFILE, else
  the system's) and matches the server's name, and a server that offers REQUIRETLS after
  it; otherwise `TlsPolicyError` (a 5.7.10), never a plaintext retry.
- A session opened with `ClientSettings.tls_requirement` (a destination's MTA-STS
  `enforce` policy or DANE TLSA records, built by outbound/tlspolicy.py) is STARTTLS with
  the requirement's context, then its `check` on the session; otherwise
  `TlsRequirementError` (temporary, with the RFC 8460 result type), never plaintext.
- Credentials are never sent over an unencrypted connection (Postfix's default
  `smtp_sasl_security_options = noplaintext`): without TLS the session fails temporarily.
- `SessionError` means "this server could not take the mail now" — the caller moves on to
  the next address; a transaction's own replies are returned, not raised. A malformed
  reply, a timeout or a lost connection is a SessionError, never another exception.
- Commands carry no CR, LF or other control characters (addresses are checked before use).
- Every read has a timeout; replies are read strictly in the order commands were sent.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from postroom.outbound.model import TransactionOptions
from postroom.outbound.replyparse import (
    Extensions,
    MalformedReply,
    ParsedReply,
    ReplyParser,
    frame_data,
    parse_extensions,
)

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 30.0
# RFC 5321 §4.5.3.2: 5 minutes for MAIL/RCPT replies, 10 for the reply after the final dot.
COMMAND_TIMEOUT = 300.0
DATA_TIMEOUT = 600.0
QUIT_TIMEOUT = 10.0
READ_CHUNK = 65536
PIPELINE_GROUP = 100  # commands per pipelined write, well under any socket buffer
BDAT_CHUNK = 1024 * 1024  # octets per BDAT chunk (RFC 3030 leaves the size to us)


@dataclass(frozen=True, slots=True)
class SmtpReply:
    code: int
    text: str  # the reply text, lines joined with spaces, enhanced code included
    is_local: bool = False  # made up by us (e.g. a capability the server lacks)

    def __str__(self) -> str:
        return f"{self.code} {self.text}".strip()

    @property
    def is_success(self) -> bool:
        return 200 <= self.code < 300


class SessionError(Exception):
    """The session could not be set up or broke down; try another address or later.

    `reply` is the server's refusal when there was one (a 421/554 greeting, a failed
    AUTH), else None (connection refused, timeout, lost connection).
    """

    def __init__(self, message: str, reply: SmtpReply | None = None, *,
                 is_service_refusal: bool = False) -> None:
        super().__init__(message)
        self.reply = reply
        # True when the server refused to serve us at all (greeting or HELO refused),
        # the only session failures a 5xx can make permanent (RFC 5321 §3.1, §4.2.5).
        self.is_service_refusal = is_service_refusal


@dataclass(frozen=True, slots=True)
class ClientSettings:
    helo_name: str
    port: int
    bind_address: str = ""
    username: str = ""
    password: str = field(default="", repr=False)
    connect_timeout: float = CONNECT_TIMEOUT
    command_timeout: float = COMMAND_TIMEOUT
    data_timeout: float = DATA_TIMEOUT
    requires_tls: bool = False  # RFC 8689 REQUIRETLS: verified TLS or no session
    tls_cafile: str = ""  # SMTP_TLS_CAFILE: the CAs verified against ("" = system)
    tls_requirement: TlsRequirement | None = None  # MTA-STS enforce or DANE

    @property
    def has_credentials(self) -> bool:
        return bool(self.username)


def opportunistic_tls_context() -> ssl.SSLContext:
    """TLS 1.2+, any certificate accepted (see the module docstring for why)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


# What a requirement's check says of a session: None, or (RFC 8460 result type, reason).
TlsCheck = Callable[[ssl.SSLObject], "tuple[str, str] | None"]


@dataclass(frozen=True, slots=True)
class TlsRequirement:
    """TLS the destination's policy demands: STARTTLS with `context`, then `check`."""

    label: str  # who demands it, for the error: "MTA-STS policy of example.org (enforce)"
    context: ssl.SSLContext
    check: TlsCheck | None = None


class TlsRequirementError(SessionError):
    """This server did not give the TLS its destination's policy demands: temporary."""

    def __init__(self, message: str, result_type: str) -> None:
        super().__init__(message)
        self.result_type = result_type  # RFC 8460 §4.3 result-type, for TLS-RPT


def _requirement_failure(requirement: TlsRequirement, server_name: str,
                         error: BaseException | None) -> TlsRequirementError:
    """A failed handshake as the requirement's error, named as TLS-RPT names it."""
    code = getattr(error, "verify_code", None)
    result, reason = {62: ("certificate-host-mismatch", "does not match"),
                      10: ("certificate-expired", "has expired")}.get(
        code or 0, ("certificate-not-trusted", "is not trusted"))
    if code is None:
        result, reason = "validation-failure", f"failed TLS: {error or type(error).__name__}"
    return TlsRequirementError(f"{requirement.label}: certificate of {server_name} {reason}",
                               result)


class TlsPolicyError(SessionError):
    """RFC 8689: this server cannot carry REQUIRETLS mail (no STARTTLS, a certificate
    that does not verify, or no REQUIRETLS offered). Permanent: 5.7.10."""

    def __init__(self, message: str) -> None:
        super().__init__(message, _reply(550, f"5.7.10 {message}", local=True),
                         is_service_refusal=True)


def verifying_tls_context(cafile: str = "") -> ssl.SSLContext:
    """TLS 1.2+, the certificate verified against `cafile` (else the system's store) and
    matched against the server's name (RFC 8689 §4.2.1 for REQUIRETLS mail)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class _Wire:
    """The connection: writes commands, reads replies in order, raises SessionError."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.parser = ReplyParser()
        # Replies that arrived together (a pipelined burst) wait here in order.
        self._ready: deque[ParsedReply] = deque()
        self.is_closed = False

    @property
    def is_open(self) -> bool:
        return not (self.is_closed or self.writer.is_closing() or self.reader.at_eof())

    async def write(self, data: bytes) -> None:
        try:
            self.writer.write(data)
            await self.writer.drain()
        except OSError as exc:
            self.abort()
            raise SessionError(f"connection lost: {exc}") from exc

    async def read(self, seconds: float) -> ParsedReply:
        try:
            async with asyncio.timeout(seconds):
                while not self._ready:
                    await self._receive()
        except TimeoutError as exc:
            self.abort()
            raise SessionError(f"no reply within {seconds:g} s") from exc
        except MalformedReply as exc:
            self.abort()
            raise SessionError(f"malformed reply: {exc}") from exc
        except OSError as exc:
            self.abort()
            raise SessionError(f"connection lost: {exc}") from exc
        return self._ready.popleft()

    async def _receive(self) -> None:
        data = await self.reader.read(READ_CHUNK)
        if not data:
            self.abort()
            raise SessionError("connection closed by the server")
        self._ready.extend(self.parser.feed(data))

    @property
    def has_unread_bytes(self) -> bool:
        return bool(self._ready) or self.parser.has_pending_bytes

    def abort(self) -> None:
        self.is_closed = True
        self.writer.transport.abort()


class OutboundSession:
    """One connected, greeted (and maybe TLS-protected, authenticated) SMTP session."""

    def __init__(self, wire: _Wire, server_name: str, ip: str,
                 settings: ClientSettings) -> None:
        self._wire = wire
        self.server_name = server_name
        self.ip = ip
        self._settings = settings
        self.is_tls = False
        self._extensions = Extensions()

    @classmethod
    async def open(cls, ip: str, server_name: str, settings: ClientSettings
                   ) -> OutboundSession:
        """Connect to `ip`; `server_name` is the MX host name (SNI, logs, Remote-MTA,
        and the name a verified certificate must carry)."""
        try:
            return await cls._open(ip, server_name, settings, try_tls=True)
        except _TlsFailed as failure:
            if settings.requires_tls:  # RFC 8689 §4.2.1: never fall back to plaintext
                raise TlsPolicyError(f"TLS with {server_name} failed: {failure}") from failure
            if settings.tls_requirement is not None:
                raise _requirement_failure(settings.tls_requirement, server_name,
                                           failure.__cause__) from failure
            log.info("STARTTLS with %s [%s] failed (%s); retrying without TLS",
                     server_name, ip, failure)
            return await cls._open(ip, server_name, settings, try_tls=False)

    @classmethod
    async def _open(cls, ip: str, server_name: str, settings: ClientSettings, *,
                    try_tls: bool) -> OutboundSession:
        session = cls(await _dial(ip, settings), server_name, ip, settings)
        try:
            await session._greeting()
            await session._hello()
            if try_tls and session._extensions.has("STARTTLS"):
                await session._start_tls()
            elif settings.tls_requirement is not None:
                raise TlsRequirementError(f"{settings.tls_requirement.label}: {server_name}"
                                          " does not offer STARTTLS", "starttls-not-supported")
            if settings.requires_tls:
                session._check_requiretls()
            if settings.has_credentials:
                await session._authenticate()
        except BaseException:
            session._wire.abort()
            raise
        return session

    async def _greeting(self) -> None:
        reply = await self._wire.read(self._settings.connect_timeout)
        if reply.code != 220:
            # RFC 5321 §3.1: a 554 (or 421) greeting means "no service here"; other MX
            # hosts may still serve.
            refusal = _reply(reply.code, reply.text)
            raise SessionError(f"greeting refused: {refusal}", refusal,
                               is_service_refusal=True)

    async def _hello(self) -> None:
        ehlo = await self._ehlo()
        if ehlo.code == 250:
            return
        if not 500 <= ehlo.code < 600:
            raise SessionError(f"EHLO failed: {_reply(ehlo.code, ehlo.text)}")
        # RFC 5321 §4.1.1.1: fall back to HELO when EHLO is not understood.
        helo = await self._command(f"HELO {self._settings.helo_name}")
        if helo.code != 250:
            raise SessionError(f"HELO refused: {helo}", helo, is_service_refusal=True)

    async def _ehlo(self) -> ParsedReply:
        await self._wire.write(f"EHLO {self._settings.helo_name}\r\n".encode("ascii"))
        reply = await self._wire.read(self._settings.command_timeout)
        self._extensions = parse_extensions(reply) if reply.code == 250 else Extensions()
        return reply

    async def _start_tls(self) -> None:
        reply = await self._command("STARTTLS")
        if reply.code != 220:
            raise _TlsFailed(str(reply))
        if self._wire.has_unread_bytes:
            # RFC 3207 §6 / CVE-2011-0411 class: bytes sent before the handshake could be
            # taken as replies to what we say inside TLS.
            raise _TlsFailed("data after the STARTTLS reply")
        requirement = self._settings.tls_requirement
        try:
            context = (verifying_tls_context(self._settings.tls_cafile)
                       if self._settings.requires_tls else requirement.context
                       if requirement is not None else opportunistic_tls_context())
            await self._wire.writer.start_tls(
                context, server_hostname=self.server_name or None,
                ssl_handshake_timeout=self._settings.connect_timeout)
        except (ssl.SSLError, OSError, TimeoutError) as exc:
            raise _TlsFailed(str(exc) or type(exc).__name__) from exc
        self.is_tls = True
        if requirement is not None and requirement.check is not None:
            problem = requirement.check(self._wire.writer.get_extra_info("ssl_object"))
            if problem is not None:
                raise TlsRequirementError(f"{requirement.label}: certificate of"
                                          f" {self.server_name} {problem[1]}", problem[0])
        # RFC 3207 §4.2: forget what was learnt before TLS and greet again.
        ehlo = await self._ehlo()
        if ehlo.code != 250:
            raise SessionError(f"EHLO after STARTTLS failed: {_reply(ehlo.code, ehlo.text)}")

    def _check_requiretls(self) -> None:
        """RFC 8689 §4.2.1: verified TLS, and a server that promises to keep it up."""
        if not self.is_tls:
            raise TlsPolicyError(f"{self.server_name} does not offer STARTTLS")
        if not self._extensions.has("REQUIRETLS"):
            raise TlsPolicyError(f"{self.server_name} does not offer REQUIRETLS")

    def offers(self, keyword: str) -> bool:
        """Whether the server's (last) EHLO advertised `keyword`."""
        return self._extensions.has(keyword)

    async def _authenticate(self) -> None:
        if not self.is_tls:
            raise SessionError("not sending credentials to the relay host without TLS",
                               _reply(454, "4.7.0 TLS required for AUTH", local=True))
        mechanisms = self._extensions.auth_mechanisms
        if not self._extensions.has("AUTH"):
            return  # the relay may accept us by address; its replies will tell
        if "PLAIN" in mechanisms:
            reply = await self._auth_plain()
        elif "LOGIN" in mechanisms:
            reply = await self._auth_login()
        else:
            raise SessionError(f"AUTH failed: no common mechanism in {sorted(mechanisms)}")
        if reply.code != 235:
            # Postfix `smtp_sasl_auth_soft_bounce = yes`: a rejected login is deferred,
            # not bounced, so fixing the password delivers the queue.
            raise SessionError(f"AUTH failed: {reply}", reply)

    async def _auth_plain(self) -> SmtpReply:
        # RFC 4616 §2: authzid NUL authcid NUL passwd, sent as the initial response.
        token = f"\0{self._settings.username}\0{self._settings.password}"
        return await self._command(f"AUTH PLAIN {_base64(token)}")

    async def _auth_login(self) -> SmtpReply:
        # draft-murchison-sasl-login: the server asks for the user name, then the password.
        reply = await self._command("AUTH LOGIN")
        for answer in (self._settings.username, self._settings.password):
            if reply.code != 334:
                return reply
            reply = await self._command(_base64(answer))
        return reply

    # -- transactions ------------------------------------------------------------------

    async def send(self, sender: str, recipients: Sequence[str], message: bytes,
                   options: TransactionOptions | None = None) -> list[SmtpReply]:
        """One transaction; returns one reply per recipient, in order.

        A recipient refused at RCPT gets that reply; accepted ones share the reply to the
        end of DATA (or to the first failed or LAST BDAT); when MAIL is refused, or the
        server cannot take what `options` asks (BINARYMIME, REQUIRETLS: a local 5xx),
        every recipient gets that reply. Raises
        SessionError when the connection breaks: the outcome is then unknown and the
        caller must retry (RFC 5321 §6.1 accepts the rare duplicate over a loss).
        """
        if not all(_is_sendable(address) for address in (sender, *recipients)):
            reply = _reply(553, "5.1.3 address cannot be put on an SMTP command line",
                           local=True)
            return [reply] * len(recipients)
        needs_utf8 = not all(a.isascii() for a in (sender, *recipients))
        if needs_utf8 and not self._extensions.has("SMTPUTF8"):
            # RFC 6531 §3.4: no downgrade for addresses; this server cannot take it.
            reply = _reply(553, "5.6.7 remote server does not support SMTPUTF8", local=True)
            return [reply] * len(recipients)
        options = options or TransactionOptions()
        refusal = self._capability_refusal(options)
        if refusal is not None:
            return [refusal] * len(recipients)
        if self._wire.is_closed:
            raise SessionError("connection already closed")
        return await self._transact(sender, recipients, message, needs_utf8, options)

    def _capability_refusal(self, options: TransactionOptions) -> SmtpReply | None:
        """A local refusal when this server cannot take what the message needs."""
        if options.is_binarymime and not (self.offers("CHUNKING") and self.offers("BINARYMIME")):
            # RFC 3030 §3: convert or bounce; we bounce (the body may be any octets, and a
            # re-encoding would break the DKIM signature it may carry).
            return _reply(554, "5.6.3 remote server does not support BINARYMIME", local=True)
        is_verified = self._settings.requires_tls and self.is_tls  # see _check_requiretls
        if options.is_requiretls and not (is_verified and self.offers("REQUIRETLS")):
            return _reply(550, "5.7.10 REQUIRETLS needs verified TLS and REQUIRETLS",
                          local=True)  # fmt: skip
        return None

    async def _transact(self, sender: str, recipients: Sequence[str], message: bytes,
                        needs_utf8: bool, options: TransactionOptions) -> list[SmtpReply]:
        encoding = "utf-8" if needs_utf8 else "ascii"
        mail = " ".join([f"MAIL FROM:<{sender}>",
                         *self._mail_parameters(message, needs_utf8, options)])
        commands = [mail, *(" ".join([f"RCPT TO:<{rcpt}>",
                                      *self._rcpt_parameters(options, index)])
                            for index, rcpt in enumerate(recipients))]
        if self._extensions.has("PIPELINING"):
            mail_reply, *replies = await self._pipeline(commands, encoding)
        else:
            mail_reply = await self._command(mail, encoding)
            replies = [] if not mail_reply.is_success else [
                await self._command(c, encoding) for c in commands[1:]]
        if not mail_reply.is_success:
            await self._reset()
            return [mail_reply] * len(recipients)
        accepted = [i for i, reply in enumerate(replies) if reply.is_success]
        if not accepted:
            await self._reset()
            return replies
        if self.offers("CHUNKING"):
            data_reply = await self._bdat(message)
        else:
            data_reply = await self._data(message)
        for index in accepted:
            replies[index] = data_reply
        return replies

    async def _pipeline(self, commands: list[str], encoding: str) -> list[SmtpReply]:
        """RFC 2920 §3.1: MAIL and RCPT go out as one group and the replies come back in
        the same order. DATA waits for them (no 354-versus-failure guessing). Groups are
        capped so neither side can block writing while the other does too (§3.2 (6))."""
        replies: list[SmtpReply] = []
        for start in range(0, len(commands), PIPELINE_GROUP):
            group = commands[start:start + PIPELINE_GROUP]
            await self._wire.write("".join(f"{c}\r\n" for c in group).encode(encoding))
            replies.extend([await self._read() for _ in group])
        return replies

    def _mail_parameters(self, message: bytes, needs_utf8: bool,
                         options: TransactionOptions) -> list[str]:
        parameters = []
        if self._extensions.has("SIZE"):
            parameters.append(f"SIZE={len(message)}")  # RFC 1870 §6
        if options.is_binarymime:
            parameters.append("BODY=BINARYMIME")  # RFC 3030 §3 (checked: offered)
        elif not message.isascii() and self._extensions.has("8BITMIME"):
            parameters.append("BODY=8BITMIME")  # RFC 6152 §3
        if needs_utf8:
            parameters.append("SMTPUTF8")  # RFC 6531 §3.4
        if self.offers("DSN"):  # RFC 3461 §4.3, §4.4
            parameters += [f"RET={options.ret}"] if options.ret else []
            parameters += [f"ENVID={options.envid}"] if options.envid else []
        if options.is_requiretls:
            parameters.append("REQUIRETLS")  # RFC 8689 §4.2.1 (checked: offered)
        return parameters

    def _rcpt_parameters(self, options: TransactionOptions, index: int) -> list[str]:
        """RFC 3461 §4.1, §4.2: NOTIFY and ORCPT, to a server that offers DSN."""
        if not self.offers("DSN") or index >= len(options.recipients):
            return []
        recipient = options.recipients[index]
        return ([f"NOTIFY={recipient.notify}"] if recipient.notify else []) + (
            [f"ORCPT={recipient.orcpt}"] if recipient.orcpt else [])

    async def _bdat(self, message: bytes) -> SmtpReply:
        """RFC 3030 §2: the message as it is, in chunks, the last marked LAST. Pipelined
        when offered (§4.2): every chunk's reply is read after all are sent; the first
        failure is the transaction's (the server fails the later chunks too)."""
        chunks = [message[start:start + BDAT_CHUNK]
                  for start in range(0, len(message), BDAT_CHUNK)] or [b""]
        is_pipelined = self.offers("PIPELINING")
        replies = []
        for index, chunk in enumerate(chunks):
            last = " LAST" if index == len(chunks) - 1 else ""
            await self._wire.write(f"BDAT {len(chunk)}{last}\r\n".encode() + chunk)
            if not is_pipelined:
                replies.append(await self._read(self._settings.data_timeout))
                if not replies[-1].is_success:
                    break
        if is_pipelined:
            replies = [await self._read(self._settings.data_timeout) for _ in chunks]
        failures = [reply for reply in replies if not reply.is_success]
        if failures:
            await self._reset()
            return failures[0]
        return replies[-1]

    async def _data(self, message: bytes) -> SmtpReply:
        reply = await self._command("DATA")
        if reply.code != 354:  # RFC 5321 §4.1.1.4: the transaction failed; clean up
            await self._reset()
            return reply
        await self._wire.write(frame_data(message))
        return await self._read(self._settings.data_timeout)

    async def _reset(self) -> None:
        reply = await self._command("RSET")
        if reply.code != 250:
            self._wire.abort()
            raise SessionError(f"RSET refused: {reply}", reply)

    async def _command(self, line: str, encoding: str = "ascii") -> SmtpReply:
        """Write one command line and read its reply."""
        await self._wire.write(f"{line}\r\n".encode(encoding))
        return await self._read()

    async def _read(self, seconds: float | None = None) -> SmtpReply:
        parsed = await self._wire.read(seconds or self._settings.command_timeout)
        reply = _reply(parsed.code, parsed.text)
        if reply.code == 421:
            # RFC 5321 §3.8: the server is closing the channel; nothing more will follow.
            self._wire.abort()
            raise SessionError(f"server closing the connection: {reply}", reply)
        return reply

    @property
    def is_connected(self) -> bool:
        return self._wire.is_open

    async def close(self) -> None:
        """QUIT politely; any failure just drops the connection."""
        if not self._wire.is_open:
            self._wire.abort()
            return
        try:
            await self._wire.write(b"QUIT\r\n")
            await self._wire.read(QUIT_TIMEOUT)
        except SessionError:
            pass
        finally:
            self._wire.abort()


async def _dial(ip: str, settings: ClientSettings) -> _Wire:
    local = (settings.bind_address, 0) if settings.bind_address else None
    try:
        async with asyncio.timeout(settings.connect_timeout):
            reader, writer = await asyncio.open_connection(ip, settings.port,
                                                           local_addr=local)
    except (OSError, TimeoutError) as exc:
        raise SessionError(f"cannot connect: {exc or type(exc).__name__}") from exc
    return _Wire(reader, writer)


class _TlsFailed(Exception):
    pass


def _reply(code: int, text: str, *, local: bool = False) -> SmtpReply:
    return SmtpReply(code, " ".join(text.split()), is_local=local)


def _base64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _is_sendable(address: str) -> bool:
    """No control characters or angle brackets, which could end or inject a command."""
    return not any(ord(char) < 32 or char in "<>\x7f" for char in address)
