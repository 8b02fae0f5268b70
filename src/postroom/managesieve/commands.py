"""ManageSieve commands (RFC 5804 §2): what each does, in which state, and its answer.

Owns the session state (before login, after login; TLS or not), the capability list
(§1.7: SIEVE lists exactly the extensions the interpreter runs, `registry.CAPABILITIES`),
authentication through AccountService (bans, failure delay and hashing limits come with
it, as for IMAP) and the script commands over `SieveScripts` (accounts/sievescripts.py).

Invariants:
- AUTHENTICATE works only inside TLS (implicit never: 4190 is STARTTLS-only, RFC 5804
  §1.8); before TLS the SASL capability is empty and AUTHENTICATE answers
  `NO (ENCRYPT-NEEDED)`.
- Every answer is an `Answer`: the bytes before the final line (script text, listing)
  and the final OK / NO / BYE; errors of errors.py's vocabulary become NO with the
  code they carry, in the driver (session.py).
"""

from __future__ import annotations

import base64
import binascii
import enum
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from postroom.accounts.sievescripts import SieveScripts
from postroom.errors import BadSyntax, Refused
from postroom.managesieve.wire import Command, render_capabilities, render_string
from postroom.runtime import Runtime
from postroom.sasl import Challenge, Credentials, SaslAborted, SaslExchange
from postroom.sieve.registry import CAPABILITIES
from postroom.store.api import Account

log = logging.getLogger("postroom.managesieve")

IMPLEMENTATION = "postroom"
MAX_AUTH_FAILURES = 3


class After(enum.Enum):
    CONTINUE = "continue"
    START_TLS = "start-tls"
    CLOSE = "close"
    SASL = "sasl"  # a continuation was sent: the next line is a SASL response


@dataclass(frozen=True, slots=True)
class Answer:
    status: str = "OK"  # OK, NO or BYE
    text: str = ""
    code: str = ""
    body: bytes = b""  # before the status line
    after: After = After.CONTINUE
    continuation: str | None = None  # a SASL challenge (base64) instead of a status


class ManageSieveSession:
    def __init__(self, runtime: Runtime, scripts: SieveScripts, *, peer: str) -> None:
        self.runtime = runtime
        self.scripts = scripts
        self.peer = peer
        self.is_tls = False
        self.account: Account | None = None
        self._sasl: SaslExchange | None = None
        self._failures = 0

    # -- capabilities (§1.7) -----------------------------------------------------------
    def capabilities(self) -> bytes:
        config = self.runtime.config
        items: list[tuple[str, str | None]] = [
            ("IMPLEMENTATION", IMPLEMENTATION),
            ("SIEVE", " ".join(CAPABILITIES)),
            ("SASL", "PLAIN LOGIN" if self.is_tls else ""),
            ("MAXREDIRECTS", str(config.sieve_max_redirects)),
            ("VERSION", "1.0"),
            ("UNAUTHENTICATE", None),
        ]
        if not self.is_tls:
            items.insert(3, ("STARTTLS", None))
        if self.account is not None:
            items.append(("OWNER", self.account.address))
        return render_capabilities(items)

    def greeting(self) -> bytes:
        return self.capabilities()

    # -- dispatch ------------------------------------------------------------------------
    async def handle(self, command: Command) -> Answer:
        name = command.name
        if name in _ANY_STATE:
            return await _ANY_STATE[name](self, command)
        if self.account is None:
            if name in _NOT_AUTHENTICATED:
                return await _NOT_AUTHENTICATED[name](self, command)
            if name in _AUTHENTICATED or name in _LOGGED_IN:
                return Answer("NO", "log in first")
        elif name in _AUTHENTICATED:
            return await _AUTHENTICATED[name](self, command, self.account)
        elif name in _LOGGED_IN:
            return await _LOGGED_IN[name](self, command)
        raise BadSyntax(f"unknown command {name}")

    async def sasl_response(self, text: str) -> Answer:
        exchange, self._sasl = self._sasl, None
        if exchange is None:
            raise BadSyntax("no authentication in progress")
        return await self._sasl_step(exchange, text)

    def tls_started(self) -> None:
        self.is_tls = True

    # -- authentication (§2.1) -----------------------------------------------------------
    async def authenticate(self, command: Command) -> Answer:
        if not self.is_tls:
            return Answer("NO", "authentication needs TLS: STARTTLS first", "ENCRYPT-NEEDED")
        mechanism, initial = _strings(command, 1, 2)
        try:
            exchange = SaslExchange(mechanism or "")
        except BadSyntax:
            return Answer("NO", f"unsupported SASL mechanism {mechanism}")
        if initial is None:
            result = exchange.start(None)
            return self._challenge(exchange, result)
        return await self._sasl_step(exchange, initial)

    def _challenge(self, exchange: SaslExchange, result: Challenge | Credentials) -> Answer:
        assert isinstance(result, Challenge)
        self._sasl = exchange
        return Answer(continuation=result.text, after=After.SASL)

    async def _sasl_step(self, exchange: SaslExchange, response: str) -> Answer:
        if response == "*":
            return Answer("NO", "authentication cancelled")
        try:
            _check_base64(response)
            result = exchange.step(response)
        except SaslAborted:
            return Answer("NO", "authentication cancelled")
        if isinstance(result, Challenge):
            return self._challenge(exchange, result)
        if result.authzid not in ("", result.username):
            return await self._failed(result.username)
        account = await self.runtime.accounts.authenticate(result.username, result.password)
        if account is None:
            return await self._failed(result.username)
        self.account = account
        log.info("managesieve login %s from %s", account.address, self.peer)
        return Answer("OK", "logged in")

    async def _failed(self, user: str) -> Answer:
        self._failures += 1
        log.info("managesieve authentication failed for %r from %s", user[:100], self.peer)
        if self._failures >= MAX_AUTH_FAILURES:
            return Answer("BYE", "too many failed logins", after=After.CLOSE)
        return Answer("NO", "authentication failed")


def _check_base64(text: str) -> None:
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise BadSyntax("a SASL response must be base64") from error


def _strings(command: Command, least: int, most: int) -> list[str | None]:
    """The command's arguments as strings, padded with None to `most`."""
    args = command.arguments
    if not least <= len(args) <= most:
        raise BadSyntax(f"{command.name} takes {least}"
                        + (f" to {most}" if most != least else "") + " arguments")
    if not all(isinstance(arg, str) for arg in args):
        raise BadSyntax(f"{command.name}: expected strings")
    return [str(arg) for arg in args] + [None] * (most - len(args))


def _name(command: Command, index: int = 0) -> str:
    value = command.arguments[index] if index < len(command.arguments) else None
    if not isinstance(value, str):
        raise BadSyntax(f"{command.name}: expected a script name")
    return value


# -- commands in every state -------------------------------------------------------------
async def _capability(session: ManageSieveSession, command: Command) -> Answer:
    return Answer(body=session.capabilities())


async def _logout(session: ManageSieveSession, command: Command) -> Answer:
    return Answer("OK", "bye", after=After.CLOSE)


async def _noop(session: ManageSieveSession, command: Command) -> Answer:
    tag = command.arguments[0] if command.arguments else None
    if isinstance(tag, str):  # §2.13: NOOP "tag" echoes it in a TAG response code
        return Answer("OK", "done", "TAG " + render_string(tag).decode())
    return Answer("OK", "done")


async def _starttls(session: ManageSieveSession, command: Command) -> Answer:
    if session.is_tls:
        return Answer("NO", "TLS is already on")
    if session.account is not None:
        return Answer("NO", "STARTTLS is only valid before login")
    return Answer("OK", "begin TLS negotiation now", after=After.START_TLS)


async def _authenticate(session: ManageSieveSession, command: Command) -> Answer:
    return await session.authenticate(command)


async def _unauthenticate(session: ManageSieveSession, command: Command) -> Answer:
    if session.account is None:
        return Answer("NO", "not logged in")
    session.account = None  # RFC 5804 §2.14.1
    return Answer("OK", "logged out; log in again")


# -- commands after login ------------------------------------------------------------------
async def _havespace(session: ManageSieveSession, command: Command, account: Account
                     ) -> Answer:  # fmt: skip
    args = command.arguments
    if len(args) != 2 or not isinstance(args[0], str) or not isinstance(args[1], int):
        raise BadSyntax("HAVESPACE takes a script name and a size")
    await session.scripts.have_space(account.id, args[0], args[1])
    return Answer("OK", "putscript would succeed")


async def _putscript(session: ManageSieveSession, command: Command, account: Account
                     ) -> Answer:  # fmt: skip
    name, content = _strings(command, 2, 2)
    assert name is not None and content is not None
    await session.scripts.put(account.id, name, content)
    return Answer("OK", "script stored")


async def _checkscript(session: ManageSieveSession, command: Command, account: Account
                       ) -> Answer:  # fmt: skip
    (content,) = _strings(command, 1, 1)
    assert content is not None
    session.scripts.check(content)
    return Answer("OK", "script is valid")


async def _listscripts(session: ManageSieveSession, command: Command, account: Account
                       ) -> Answer:  # fmt: skip
    body = b""
    for info in await session.scripts.list_scripts(account.id):
        body += render_string(info.name) + (b" ACTIVE" if info.is_active else b"") + b"\r\n"
    return Answer("OK", "listed", body=body)


async def _setactive(session: ManageSieveSession, command: Command, account: Account
                     ) -> Answer:  # fmt: skip
    await session.scripts.activate(account.id, _name(command))
    return Answer("OK", "active script set")


async def _getscript(session: ManageSieveSession, command: Command, account: Account
                     ) -> Answer:  # fmt: skip
    content = await session.scripts.get(account.id, _name(command))
    data = content.encode("utf-8")
    return Answer("OK", "got it", body=b"{%d}\r\n" % len(data) + data + b"\r\n")


async def _deletescript(session: ManageSieveSession, command: Command, account: Account
                        ) -> Answer:  # fmt: skip
    await session.scripts.delete(account.id, _name(command))
    return Answer("OK", "deleted")


async def _renamescript(session: ManageSieveSession, command: Command, account: Account
                        ) -> Answer:  # fmt: skip
    old, new = _strings(command, 2, 2)
    assert old is not None and new is not None
    await session.scripts.rename(account.id, old, new)
    return Answer("OK", "renamed")


_Handler = Callable[[ManageSieveSession, Command], Awaitable[Answer]]
_AccountHandler = Callable[[ManageSieveSession, Command, Account], Awaitable[Answer]]
_ANY_STATE: dict[str, _Handler] = {"CAPABILITY": _capability, "LOGOUT": _logout, "NOOP": _noop,
              "STARTTLS": _starttls}  # fmt: skip
_NOT_AUTHENTICATED: dict[str, _Handler] = {"AUTHENTICATE": _authenticate}
_LOGGED_IN: dict[str, _Handler] = {"UNAUTHENTICATE": _unauthenticate}
_AUTHENTICATED: dict[str, _AccountHandler] = {
    "HAVESPACE": _havespace, "PUTSCRIPT": _putscript, "CHECKSCRIPT": _checkscript,
    "LISTSCRIPTS": _listscripts, "SETACTIVE": _setactive, "GETSCRIPT": _getscript,
    "DELETESCRIPT": _deletescript, "RENAMESCRIPT": _renamescript,
}  # fmt: skip

__all__ = ["After", "Answer", "ManageSieveSession", "Refused"]
