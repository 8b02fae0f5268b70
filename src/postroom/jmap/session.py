"""The JMAP Session resource (RFC 8620 §2), as served at /.well-known/jmap.

Owns the Session object's shape: capabilities (urn:ietf:params:jmap:core carrying the
advertised Limits, others as the caller gives them), accounts with their capabilities,
primaryAccounts, username, the four URL(-template)s, and the `state` string.
Invariants: `state` is a digest of everything else, so it changes exactly when the
session's content does (§2: "If any of the other properties change, this string MUST
change") and is stable across processes for equal content; URL templates carry the
variables §2 names, and nothing here does I/O.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from postroom.jmap.core import CORE_CAPABILITY, Limits


@dataclass(frozen=True, slots=True)
class Account:
    """One account the user may access (§2 "accounts")."""

    name: str
    is_personal: bool = True
    is_read_only: bool = False
    # capability URI → that capability's account-specific object
    capabilities: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def render(self) -> dict[str, Any]:
        return {
            "name": self.name, "isPersonal": self.is_personal, "isReadOnly": self.is_read_only,
            "accountCapabilities": {uri: dict(value) for uri, value in
                                    self.capabilities.items()},
        }


@dataclass(frozen=True, slots=True)
class SessionUrls:
    """The endpoint URLs; download/upload/eventSource are RFC 6570 level-1 templates."""

    api: str
    download: str  # variables {accountId} {blobId} {type} {name} (§2)
    upload: str  # variable {accountId}
    event_source: str  # variables {types} {closeafter} {ping} (§7.3)

    @classmethod
    def under(cls, base_url: str, prefix: str = "/jmap") -> SessionUrls:
        """postroom's layout below one origin, e.g. https://mail.example.org/jmap/…"""
        root = base_url.rstrip("/") + prefix
        return cls(
            api=f"{root}/api/",
            download=f"{root}/download/{{accountId}}/{{blobId}}/{{name}}?accept={{type}}",
            upload=f"{root}/upload/{{accountId}}/",
            event_source=f"{root}/eventsource/?types={{types}}&closeafter={{closeafter}}"
                         "&ping={ping}",
        )


def session_state(session: Mapping[str, Any]) -> str:
    """A stable digest of the session's content (every member but "state")."""
    content = {key: value for key, value in session.items() if key != "state"}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()[:24]


def build_session(*, username: str, accounts: Mapping[str, Account],
                  primary_accounts: Mapping[str, str], urls: SessionUrls, limits: Limits,
                  capabilities: Mapping[str, Mapping[str, Any]] | None = None
                  ) -> dict[str, Any]:
    """The Session object (§2) as a JSON-ready dict, `state` included.

    `capabilities` holds the server-wide objects of every capability besides core
    (e.g. {"urn:ietf:params:jmap:mail": {}}); core is rendered from `limits`.
    `primary_accounts` maps a capability URI to an account id present in `accounts`.
    """
    for uri, account_id in primary_accounts.items():
        if account_id not in accounts:
            raise ValueError(f"primary account {account_id} for {uri} is not an account")
    advertised: dict[str, Any] = {CORE_CAPABILITY: limits.render_capability()}
    advertised.update({uri: dict(value) for uri, value in (capabilities or {}).items()})
    session: dict[str, Any] = {
        "capabilities": advertised,
        "accounts": {account_id: account.render() for account_id, account in
                     accounts.items()},
        "primaryAccounts": dict(primary_accounts),
        "username": username,
        "apiUrl": urls.api,
        "downloadUrl": urls.download,
        "uploadUrl": urls.upload,
        "eventSourceUrl": urls.event_source,
    }
    session["state"] = session_state(session)
    return session
