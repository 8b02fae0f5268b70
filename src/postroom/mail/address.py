"""Mailbox addresses: validation and the canonical form postroom stores.

Owns what counts as a valid `local@domain` for accounts, aliases and SMTP recipients.
Canonical form: domain lower-cased, IDNA-encoded (A-labels) and without a trailing dot;
local part lower-cased (local parts are case-insensitive here, as in Postfix's virtual
maps and Dovecot). Anything that could smuggle routing — `%`, `!`, `@` in the local part,
source routes, IP-literal domains, quoted local parts — is refused for *local* use, so no
address trick can turn a local lookup into relaying (issue 7, open-relay tests).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from postroom.errors import BadSyntax

# RFC 5322 §3.2.3 dot-atom: atext characters, dots only between atoms.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_DOT_ATOM = re.compile(rf"{_ATEXT}+(\.{_ATEXT}+)*")
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
# `%` and `!` are atext but are the old relay hacks (RFC 5321 §3.6.1 leaves them to local
# policy); no account or alias may contain them.
_ROUTING_CHARACTERS = set("%!")


@dataclass(frozen=True, slots=True)
class Address:
    local: str
    domain: str

    def __str__(self) -> str:
        return f"{self.local}@{self.domain}"


def normalize_domain(domain: str) -> str:
    """Lower-case A-label form; raises BadSyntax for anything that is not a host name."""
    domain = domain.strip().rstrip(".")
    try:
        ascii_domain = domain.encode("idna").decode("ascii").lower()
    except UnicodeError as error:
        raise BadSyntax(f"invalid domain {domain!r}") from error
    labels = ascii_domain.split(".")
    if len(ascii_domain) > 253 or len(labels) < 2 or not all(
        _LABEL.fullmatch(label) for label in labels
    ):
        raise BadSyntax(f"invalid domain {domain!r}")
    return ascii_domain


def parse_address(text: str) -> Address:
    """A local address `local@domain`, canonicalised; raises BadSyntax naming the problem."""
    text = text.strip()
    local, at, domain = text.rpartition("@")
    if not at or not local:
        raise BadSyntax(f"{text!r} is not an address of the form user@domain")
    if len(local) > 64 or not _DOT_ATOM.fullmatch(local):
        raise BadSyntax(f"invalid local part in {text!r}")
    if _ROUTING_CHARACTERS & set(local):
        raise BadSyntax(f"{text!r}: '%' and '!' are not allowed in local parts")
    return Address(local.lower(), normalize_domain(domain))


def parse_alias_source(text: str) -> str:
    """An alias source: an address, or `@domain` for a catch-all."""
    text = text.strip()
    if text.startswith("@"):
        return "@" + normalize_domain(text[1:])
    return str(parse_address(text))
