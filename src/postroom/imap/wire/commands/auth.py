"""STARTTLS LOGIN AUTHENTICATE UNAUTHENTICATE: command dataclasses and parsers
(RFC 9051 §6.2; RFC 4959 SASL-IR; RFC 8437 UNAUTHENTICATE).

Owns the not-authenticated commands' syntax; handlers are `imap/commands/auth.py`
(STARTTLS is run by the session driver, which owns the socket).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

from postroom.imap.wire.commands.base import Command, ParseContext, Parser, no_args
from postroom.imap.wire.lexer import ParseError


@dataclass(frozen=True, slots=True)
class StartTls(Command):
    pass


@dataclass(frozen=True, slots=True)
class Authenticate(Command):
    """`initial_response` is the decoded SASL-IR (RFC 4959): b"" for "=", None if absent."""

    mechanism: str
    initial_response: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Unauthenticate(Command):
    pass


@dataclass(frozen=True, slots=True)
class Login(Command):
    username: str
    password: str = field(repr=False)


def parse_authenticate(ctx: ParseContext) -> Command:
    lx = ctx.lx
    lx.expect_sp()
    mechanism = lx.read_atom().upper()
    initial: bytes | None = None
    if lx.skip(b" "):
        raw = lx.read_atom()
        if raw == "=":  # RFC 4959 §3: "=" is an empty initial response
            initial = b""
        else:
            try:
                initial = base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ParseError("initial response is not base64") from exc
    return Authenticate(ctx.tag, mechanism, initial)


def parse_login(ctx: ParseContext) -> Command:
    lx = ctx.lx
    lx.expect_sp()
    username = lx.read_astring_text()
    lx.expect_sp()
    return Login(ctx.tag, username, lx.read_astring_text())


PARSERS: dict[str, Parser] = {
    "STARTTLS": no_args(StartTls),
    "AUTHENTICATE": parse_authenticate,
    "LOGIN": parse_login,
    "UNAUTHENTICATE": no_args(Unauthenticate),
}
