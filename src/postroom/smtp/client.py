"""The outbound SMTP client: one session to one chosen server address (RFC 5321 §3, §4).

Owns everything about talking to a remote MX or the relay host once routing has picked
an IP address: dialling it ourselves (OUTBOUND_SMTP_PORT, from OUTBOUND_BIND_ADDRESS when
set), EHLO with our host name (HELO when EHLO is refused, RFC 5321 §4.1.1.1),
opportunistic STARTTLS (RFC 3207) without certificate checks, AUTH to the relay host,
and transactions that report one reply per recipient.

aiosmtplib is imported here and nowhere else (ARCHITECTURE.md rule 2).

Invariants:
- TLS is opportunistic: a certificate is never verified, because without MTA-STS or DANE
  (RFC 8461 / RFC 7672) nothing says which certificate is right, and refusing would only
  push the mail to plaintext. A failed handshake is retried once in plaintext, as Postfix
  does at `smtp_tls_security_level = may`.
- Credentials are never sent over an unencrypted connection (Postfix's default
  `smtp_sasl_security_options = noplaintext`): without TLS the session fails temporarily.
- `SessionError` means "this server could not take the mail now" — the caller moves on to
  the next address; a transaction's own replies are returned, not raised.
- Commands carry no CR, LF or other control characters (addresses are checked before use).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiosmtplib

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 30.0
# RFC 5321 §4.5.3.2: 5 minutes for MAIL/RCPT replies, 10 for the reply after the final dot.
COMMAND_TIMEOUT = 300.0
DATA_TIMEOUT = 600.0


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


class OutboundSession:
    """One connected, greeted (and maybe TLS-protected, authenticated) SMTP session."""

    def __init__(self, smtp: aiosmtplib.SMTP, server_name: str, ip: str,
                 settings: ClientSettings) -> None:
        self._smtp = smtp
        self.server_name = server_name
        self.ip = ip
        self._settings = settings
        self.is_tls = False

    @classmethod
    async def open(cls, ip: str, server_name: str, settings: ClientSettings
                   ) -> OutboundSession:
        """Connect to `ip`; `server_name` is the MX host name (SNI, logs, Remote-MTA)."""
        try:
            return await cls._open(ip, server_name, settings, try_tls=True)
        except _TlsFailed as failure:
            log.info("STARTTLS with %s [%s] failed (%s); retrying without TLS",
                     server_name, ip, failure)
            return await cls._open(ip, server_name, settings, try_tls=False)

    @classmethod
    async def _open(cls, ip: str, server_name: str, settings: ClientSettings, *,
                    try_tls: bool) -> OutboundSession:
        smtp = aiosmtplib.SMTP(
            hostname=ip, port=settings.port, local_hostname=settings.helo_name,
            source_address=(settings.bind_address, 0) if settings.bind_address else None,
            timeout=settings.command_timeout, start_tls=False, use_tls=False,
            validate_certs=False,
        )
        session = cls(smtp, server_name, ip, settings)
        try:
            await session._connect()
            await session._hello()
            if try_tls and smtp.supports_extension("starttls"):
                await session._start_tls()
            if settings.has_credentials:
                await session._authenticate()
        except BaseException:
            smtp.close()
            raise
        return session

    async def _connect(self) -> None:
        try:
            await self._smtp.connect(timeout=self._settings.connect_timeout)
        except aiosmtplib.SMTPConnectResponseError as exc:
            # RFC 5321 §3.1: a 554 (or 421) greeting means "no service here"; other MX
            # hosts may still serve.
            raise SessionError(f"greeting refused: {exc.code} {exc.message}",
                               _reply(exc.code, exc.message),
                               is_service_refusal=True) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise SessionError(f"cannot connect: {exc}") from exc

    async def _hello(self) -> None:
        try:
            await self._smtp.ehlo()
        except aiosmtplib.SMTPHeloError:
            try:  # RFC 5321 §4.1.1.1: fall back to HELO when EHLO is not understood
                await self._smtp.helo()
            except aiosmtplib.SMTPResponseException as exc:
                raise SessionError(f"HELO refused: {exc.code} {exc.message}",
                                   _reply(exc.code, exc.message),
                                   is_service_refusal=True) from exc
        except aiosmtplib.SMTPException as exc:
            raise SessionError(f"EHLO failed: {exc}") from exc

    async def _start_tls(self) -> None:
        try:
            await self._smtp.starttls(server_hostname=self.server_name or None,
                                      validate_certs=False,
                                      tls_context=opportunistic_tls_context())
            # RFC 3207 §4.2: forget what was learnt before TLS and greet again.
            await self._smtp.ehlo()
        except aiosmtplib.SMTPResponseException as exc:
            raise _TlsFailed(f"{exc.code} {exc.message}") from exc
        except (aiosmtplib.SMTPException, ssl.SSLError, OSError) as exc:
            raise _TlsFailed(str(exc)) from exc
        self.is_tls = True

    async def _authenticate(self) -> None:
        if not self.is_tls:
            raise SessionError("not sending credentials to the relay host without TLS",
                               _reply(454, "4.7.0 TLS required for AUTH", local=True))
        if not self._smtp.supports_extension("auth"):
            return  # the relay may accept us by address; its replies will tell
        try:
            await self._smtp.login(self._settings.username, self._settings.password)
        except aiosmtplib.SMTPResponseException as exc:
            # Postfix `smtp_sasl_auth_soft_bounce = yes`: a rejected login is deferred,
            # not bounced, so fixing the password delivers the queue.
            raise SessionError(f"AUTH failed: {exc.code} {exc.message}",
                               _reply(exc.code, exc.message)) from exc
        except aiosmtplib.SMTPException as exc:
            raise SessionError(f"AUTH failed: {exc}") from exc

    # -- transactions ------------------------------------------------------------------

    async def send(self, sender: str, recipients: Sequence[str], message: bytes
                   ) -> list[SmtpReply]:
        """One transaction; returns one reply per recipient, in order.

        A recipient refused at RCPT gets that reply; accepted ones share the reply to the
        end of DATA; when MAIL is refused every recipient gets that reply. Raises
        SessionError when the connection breaks: the outcome is then unknown and the
        caller must retry (RFC 5321 §6.1 accepts the rare duplicate over a loss).
        """
        if not all(_is_sendable(address) for address in (sender, *recipients)):
            reply = _reply(553, "5.1.3 address cannot be put on an SMTP command line",
                           local=True)
            return [reply] * len(recipients)
        needs_utf8 = not all(a.isascii() for a in (sender, *recipients))
        if needs_utf8 and not self._smtp.supports_extension("smtputf8"):
            # RFC 6531 §3.4: no downgrade for addresses; this server cannot take it.
            reply = _reply(553, "5.6.7 remote server does not support SMTPUTF8", local=True)
            return [reply] * len(recipients)
        try:
            return await self._transact(sender, recipients, message, needs_utf8)
        except aiosmtplib.SMTPException as exc:
            self._smtp.close()
            raise SessionError(f"connection lost during the transaction: {exc}") from exc

    async def _transact(self, sender: str, recipients: Sequence[str], message: bytes,
                        needs_utf8: bool) -> list[SmtpReply]:
        encoding = "utf-8" if needs_utf8 else "ascii"
        mail_reply = await self._command(f"MAIL FROM:<{sender}>",
                                         self._mail_parameters(message, needs_utf8),
                                         encoding)
        if not mail_reply.is_success:
            await self._reset()
            return [mail_reply] * len(recipients)
        replies = [await self._command(f"RCPT TO:<{rcpt}>", [], encoding)
                   for rcpt in recipients]
        accepted = [i for i, reply in enumerate(replies) if reply.is_success]
        if not accepted:
            await self._reset()
            return replies
        data_reply = await self._data(message)
        for index in accepted:
            replies[index] = data_reply
        return replies

    def _mail_parameters(self, message: bytes, needs_utf8: bool) -> list[str]:
        parameters = []
        if self._smtp.supports_extension("size"):
            parameters.append(f"SIZE={len(message)}")  # RFC 1870 §6
        if not message.isascii() and self._smtp.supports_extension("8bitmime"):
            parameters.append("BODY=8BITMIME")  # RFC 6152 §3
        if needs_utf8:
            parameters.append("SMTPUTF8")  # RFC 6531 §3.4
        return parameters

    async def _command(self, command: str, parameters: list[str], encoding: str
                       ) -> SmtpReply:
        verb, _, argument = command.partition(" ")
        words = [verb.encode("ascii"), argument.encode(encoding),
                 *(p.encode("ascii") for p in parameters)]
        response = await self._smtp.execute_command(*words)
        return _reply(response.code, response.message)

    async def _data(self, message: bytes) -> SmtpReply:
        try:
            response = await self._smtp.data(message, timeout=self._settings.data_timeout)
        except aiosmtplib.SMTPDataError as exc:
            return _reply(exc.code, exc.message)
        return _reply(response.code, response.message)

    async def _reset(self) -> None:
        if not self._smtp.is_connected:
            return  # a 421 reply already closed the session
        try:
            await self._smtp.rset()
        except aiosmtplib.SMTPResponseException as exc:
            self._smtp.close()
            raise SessionError(f"RSET refused: {exc.code} {exc.message}") from exc

    @property
    def is_connected(self) -> bool:
        return self._smtp.is_connected

    async def close(self) -> None:
        """QUIT politely; any failure just drops the connection."""
        if not self._smtp.is_connected:
            return
        try:
            await self._smtp.quit(timeout=10)
        except (aiosmtplib.SMTPException, OSError):
            pass
        finally:
            self._smtp.close()


class _TlsFailed(Exception):
    pass


def _reply(code: int, text: str, *, local: bool = False) -> SmtpReply:
    return SmtpReply(code, " ".join(text.split()), is_local=local)


def _is_sendable(address: str) -> bool:
    """No control characters or angle brackets, which could end or inject a command."""
    return not any(ord(char) < 32 or char in "<>\x7f" for char in address)
