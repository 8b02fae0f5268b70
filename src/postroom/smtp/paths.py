"""Sans-IO SMTP path and ESMTP parameter grammar (RFC 5321 §4.1.2, §4.1.1.11).

Owns what a MAIL or RCPT argument means: the reverse-/forward-path (`Mailbox`, with
RFC 6531 UTF-8 local parts and U-labels), and the ESMTP parameters SIZE, BODY (with
RFC 3030 BINARYMIME), SMTPUTF8, AUTH, REQUIRETLS (RFC 8689) and the DSN ones
RET/ENVID/NOTIFY/ORCPT (`MailParams`, `RcptParams`, whose types
live in mail/esmtp.py with the message in transit).
Invariants: every parser raises ValueError (or its subclass `ParameterError`, a 555) on
anything it does not accept, never another exception; values are bounded by the command
line limits of smtp/wire.py. Imports nothing from asyncio, ssl, socket or postroom.store.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from postroom.mail.esmtp import MailParams, RcptParams


@dataclass(frozen=True, slots=True)
class Mailbox:
    """A path's mailbox as sent. `domain` is "" only for the bare `<Postmaster>` RCPT."""

    local: str
    domain: str
    is_quoted: bool = False  # the local part was a Quoted-string
    is_domain_literal: bool = False  # `[192.0.2.1]` / `[IPv6:…]`
    route: tuple[str, ...] = ()  # source route (RFC 5321 §4.1.1.3: accepted, ignored)

    @property
    def has_route(self) -> bool:
        return bool(self.route)

    def __str__(self) -> str:
        local = render_local_part(self.local) if self.is_quoted else self.local
        return f"{local}@{self.domain}" if self.domain else local


# -- path grammar (RFC 5321 §4.1.2, RFC 6531 §3.3 for UTF-8) -------------------------

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\x80-\U0010ffff]"
_DOT_STRING = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*")
_QUOTED_STRING = re.compile(r'"((?:[\x20\x21\x23-\x5b\x5d-\x7e\x80-\U0010ffff]|\\[\x20-\x7e])*)"')
_LET_DIG = r"[A-Za-z0-9\x80-\U0010ffff]"  # U-labels allowed (RFC 6531 §3.3)
_SUB_DOMAIN = rf"{_LET_DIG}(?:[A-Za-z0-9\-\x80-\U0010ffff]*{_LET_DIG})?"
_DOMAIN = re.compile(rf"{_SUB_DOMAIN}(?:\.{_SUB_DOMAIN})*")
_ADDRESS_LITERAL = re.compile(r"\[(?:[0-9.]+|IPv6:[0-9A-Fa-f:.]+|[A-Za-z0-9-]*[A-Za-z0-9]:"
                              r"[\x21-\x5a\x5e-\x7e]+)\]")
_ESMTP_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
# RFC 5321 §4.1.2 esmtp-value: any CHAR except "=", SP and controls (UTF-8 allowed, RFC 6531).
_ESMTP_VALUE = re.compile(r"[\x21-\x3c\x3e-\x7e\x80-\U0010ffff]+")
_XTEXT = re.compile(r"(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2})*")


def render_local_part(local: str) -> str:
    """A local part as it must appear in a path: quoted unless it is a Dot-string."""
    if _DOT_STRING.fullmatch(local):
        return local
    escaped = local.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def decode_xtext(text: str) -> str:
    """RFC 3461 §4: `+XX` hex escapes."""
    return re.sub(r"\+([0-9A-F]{2})", lambda m: chr(int(m.group(1), 16)), text)


def parse_mailbox(text: str) -> Mailbox:
    """`local@domain` (no brackets). Raises ValueError naming the problem."""
    quoted = _QUOTED_STRING.match(text)
    if quoted:
        local = re.sub(r"\\(.)", r"\1", quoted.group(1))
        rest = text[quoted.end():]
    else:
        local, at, domain_part = text.rpartition("@")
        if not at:
            raise ValueError("address has no domain")
        if not _DOT_STRING.fullmatch(local):
            raise ValueError("invalid local part")
        rest = "@" + domain_part
    if not rest.startswith("@"):
        raise ValueError("address has no domain")
    domain = rest[1:]
    if _ADDRESS_LITERAL.fullmatch(domain):
        return Mailbox(local, domain, is_quoted=bool(quoted), is_domain_literal=True)
    if not _DOMAIN.fullmatch(domain) or len(domain) > 255:
        raise ValueError("invalid domain")
    return Mailbox(local, domain, is_quoted=bool(quoted))


def split_path(argument: str) -> tuple[str, str]:
    """Split `<path> params` honouring quoted strings; returns (inside, rest)."""
    if not argument.startswith("<"):
        # Not RFC 5321, but common (Postfix accepts it unless strict_rfc821_envelopes).
        inside, _, rest = argument.partition(" ")
        return inside, rest
    index, in_quotes = 1, False
    while index < len(argument):
        char = argument[index]
        if char == "\\" and in_quotes:
            index += 2
            continue
        if char == '"':
            in_quotes = not in_quotes
        elif char == ">" and not in_quotes:
            return argument[1:index], argument[index + 1:]
        index += 1
    raise ValueError("path has no closing >")


def parse_path(inside: str, *, is_reverse: bool) -> Mailbox | None:
    """A path without its brackets: `""` (null, reverse only), `[adl:]mailbox`."""
    if inside == "":
        if is_reverse:
            return None
        raise ValueError("empty forward-path")
    route: tuple[str, ...] = ()
    if inside.startswith("@"):
        # RFC 5321 §4.1.2 A-d-l; §4.1.1.3: accept and ignore source routes.
        adl, colon, inside = inside.partition(":")
        if not colon:
            raise ValueError("source route without ':'")
        hops = tuple(hop.removeprefix("@") for hop in adl.split(","))
        if not all(hop and _DOMAIN.fullmatch(hop) for hop in hops):
            raise ValueError("invalid source route")
        route = hops
    if not is_reverse and inside.lower() == "postmaster":
        return Mailbox("postmaster", "")  # RFC 5321 §4.1.1.3 `RCPT TO:<Postmaster>`
    mailbox = parse_mailbox(inside)
    if len(mailbox.local.encode()) > 64 and not mailbox.is_quoted:
        raise ValueError("local part longer than 64 octets")  # RFC 5321 §4.5.3.1.1
    return Mailbox(mailbox.local, mailbox.domain, mailbox.is_quoted,
                   mailbox.is_domain_literal, route)


def parse_params(text: str) -> dict[str, str | None]:
    """RFC 5321 §4.1.2 Mail-parameters: `KEY[=value]` separated by spaces."""
    params: dict[str, str | None] = {}
    for item in text.split():
        key, equals, value = item.partition("=")
        if not _ESMTP_KEYWORD.fullmatch(key) or (equals and not _ESMTP_VALUE.fullmatch(value)):
            raise ValueError(f"invalid parameter {item}")
        upper = key.upper()
        if upper in params:
            raise ValueError(f"duplicate parameter {upper}")
        params[upper] = value if equals else None
    return params


class ParameterError(ValueError):
    """An unknown parameter (555) rather than a malformed one (501)."""


def _xtext(value: str | None, name: str, limit: int) -> str:
    if value is None or not _XTEXT.fullmatch(value) or len(value) > limit:
        raise ValueError(f"invalid {name} value")
    return value


def parse_mail_params(params: dict[str, str | None]) -> MailParams:
    values: dict[str, object] = {}
    for key, value in params.items():
        if key == "SIZE":  # RFC 1870 §3: size-value ::= 1*20DIGIT
            if value is None or not value.isdigit() or len(value) > 20:
                raise ValueError("invalid SIZE value")
            values["size"] = int(value)
        elif key == "BODY":  # RFC 6152 §2; RFC 3030 §3 BINARYMIME (we offer CHUNKING)
            if value is None or value.upper() not in {"7BIT", "8BITMIME", "BINARYMIME"}:
                raise ValueError("invalid BODY value")
            values["body"] = value.upper()
        elif key == "REQUIRETLS":  # RFC 8689 §2: no value
            if value is not None:
                raise ValueError("REQUIRETLS takes no value")
            values["is_requiretls"] = True
        elif key == "SMTPUTF8":  # RFC 6531 §3.4: no value
            if value is not None:
                raise ValueError("SMTPUTF8 takes no value")
            values["is_smtputf8"] = True
        elif key == "AUTH":  # RFC 4954 §5: AUTH=<> or AUTH=xtext
            values["auth"] = "" if value == "<>" else decode_xtext(_xtext(value, "AUTH", 500))
        elif key == "RET":
            if value is None or value.upper() not in {"FULL", "HDRS"}:
                raise ValueError("invalid RET value")
            values["ret"] = value.upper()
        elif key == "ENVID":  # keep the case: it is echoed back in DSNs
            values["envid"] = _xtext(value, "ENVID", 100)
        else:
            raise ParameterError(f"parameter {key} not recognized")
    return MailParams(**values)  # type: ignore[arg-type]


def parse_rcpt_params(params: dict[str, str | None]) -> RcptParams:
    notify: tuple[str, ...] = ()
    orcpt: str | None = None
    for key, value in params.items():
        if key == "NOTIFY":  # RFC 3461 §4.1
            items = tuple((value or "").upper().split(","))
            allowed = {"SUCCESS", "FAILURE", "DELAY"}
            is_valid_list = set(items) <= allowed and len(set(items)) == len(items)
            if items != ("NEVER",) and not is_valid_list:
                raise ValueError("invalid NOTIFY value")
            notify = items
        elif key == "ORCPT":  # RFC 3461 §4.2: addr-type ";" xtext
            addr_type, semicolon, address = (value or "").partition(";")
            if not semicolon or not _ESMTP_KEYWORD.fullmatch(addr_type):
                raise ValueError("invalid ORCPT value")
            orcpt = f"{addr_type};{_xtext(address, 'ORCPT', 500)}"
        else:
            raise ParameterError(f"parameter {key} not recognized")
    return RcptParams(notify, orcpt)
