"""Sans-IO SASL PLAIN (RFC 4616) and LOGIN, shared by SMTP, IMAP and POP3.

Owns decoding of client responses into credentials; it never verifies a password (the
account service does). A mechanism is driven as a small state machine: the protocol driver
feeds each base64 client response to `step()` and sends back the challenge it returns,
until `step()` returns `Credentials`. `*` from the client aborts (RFC 4954 §4,
RFC 9051 §6.2.2, RFC 5034 §4).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from postroom.errors import BadSyntax

MECHANISMS = ("PLAIN", "LOGIN")


class SaslAborted(BadSyntax):
    """The client sent `*` to cancel the exchange."""


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: str
    authzid: str = ""


@dataclass(frozen=True, slots=True)
class Challenge:
    """Base64 text to send to the client (may be empty)."""

    text: str


def decode_response(line: str) -> bytes:
    """A client response: base64, `=` for an empty initial response, `*` to abort."""
    line = line.strip()
    if line == "*":
        raise SaslAborted("authentication cancelled")
    if line == "=":
        return b""
    try:
        return base64.b64decode(line, validate=True)
    except (binascii.Error, ValueError) as error:
        raise BadSyntax("invalid base64 in SASL response") from error


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BadSyntax("SASL credentials are not UTF-8") from error


def parse_plain(message: bytes) -> Credentials:
    """RFC 4616 §2: [authzid] NUL authcid NUL passwd."""
    parts = message.split(b"\0")
    if len(parts) != 3 or not parts[1]:
        raise BadSyntax("malformed PLAIN response")
    authzid, username, password = (_text(part) for part in parts)
    return Credentials(username=username, password=password, authzid=authzid)


class SaslExchange:
    """One AUTHENTICATE exchange for PLAIN or LOGIN."""

    def __init__(self, mechanism: str) -> None:
        mechanism = mechanism.upper()
        if mechanism not in MECHANISMS:
            raise BadSyntax(f"unsupported SASL mechanism {mechanism}")
        self.mechanism = mechanism
        self._username: str | None = None

    def start(self, initial_response: str | None) -> Challenge | Credentials:
        """Begin, with the optional initial response (SASL-IR, RFC 4954 AUTH PLAIN xyz)."""
        if initial_response is None:
            return Challenge("" if self.mechanism == "PLAIN" else _b64("Username:"))
        return self.step(initial_response)

    def step(self, response: str) -> Challenge | Credentials:
        data = decode_response(response)
        if self.mechanism == "PLAIN":
            return parse_plain(data)
        if self._username is None:
            self._username = _text(data)
            return Challenge(_b64("Password:"))
        return Credentials(username=self._username, password=_text(data))


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
