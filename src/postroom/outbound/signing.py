"""DKIM signing of outgoing mail with the keys under DATA_DIR/dkim.

Owns the choice of key for a message: the key of the domain in its From header (so
DMARC alignment holds, RFC 7489 §3.1.1), else the key of the envelope sender's domain;
for that domain the RSA key (selector "mail" when several exist, the docker-mailserver
default) gives an rsa-sha256 signature, and an Ed25519 key, if one exists too, a second
ed25519-sha256 signature (RFC 8463 §5 dual signing). Keys are read from disk at each
signature, so `postroom dkim generate` takes effect without a restart.

When: the queue signs once, when it accepts a message (QueueWorker.enqueue), and stores
the signed form; retries resend the same bytes. Signing at send time would re-sign on
every attempt and could sign a later edit of the key set differently per recipient.

Invariants: signing never blocks delivery — a message without a usable From or with an
unreadable key goes out unsigned and the reason is logged.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from postroom.config import Config
from postroom.mail.envelope import parse_address_list
from postroom.mail.headers import first_value, split_message
from postroom.mailauth import keys
from postroom.mailauth.dkim import sign_message

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DomainKeys:
    domain: str
    rsa_selector: str
    rsa_pem: bytes
    ed25519_selector: str | None = None
    ed25519_pem: bytes | None = None


def keys_dir(config: Config) -> Path:
    """Where `postroom dkim generate` writes and the signer reads keys."""
    return config.data_dir / "dkim"


class DkimSigner:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @classmethod
    def from_config(cls, config: Config) -> DkimSigner:
        return cls(keys_dir(config))

    async def signature_for(self, raw: bytes, sender: str, sign_as: str = "") -> bytes:
        """DKIM-Signature field(s) to prepend to `raw`, or b"" when no key applies.
        `sign_as`: a domain to try first (the forwarding account's, for mail a Sieve
        redirect sends on: its From is someone else's)."""
        candidates = _candidate_domains(raw, sender)
        if sign_as:
            candidates = [sign_as.lower(), *(d for d in candidates if d != sign_as.lower())]
        for domain in candidates:
            found = await asyncio.to_thread(self.load_domain_keys, domain)
            if found is None:
                continue
            try:
                return await sign_message(raw, found.domain, found.rsa_selector,
                                          found.rsa_pem,
                                          ed25519_selector=found.ed25519_selector,
                                          ed25519_key=found.ed25519_pem)
            except ValueError as exc:
                log.warning("not DKIM-signing a message for %s: %s", domain, exc)
                return b""
        return b""

    def load_domain_keys(self, domain: str) -> DomainKeys | None:
        """The domain's RSA key (required) and Ed25519 key (optional); blocking."""
        folder = self.directory / domain
        if not folder.is_dir():
            return None
        found = [key for key in keys.list_keys(self.directory) if key.domain == domain]
        rsa = _pick(found, keys.KeyAlgorithm.RSA)
        if rsa is None:
            return None
        ed = _pick(found, keys.KeyAlgorithm.ED25519)
        try:
            return DomainKeys(domain, rsa.selector, rsa.private_path.read_bytes(),
                              ed.selector if ed else None,
                              ed.private_path.read_bytes() if ed else None)
        except OSError as exc:
            log.warning("cannot read DKIM key for %s: %s", domain, exc)
            return None


def _pick(found: list[keys.DkimKey], algorithm: keys.KeyAlgorithm) -> keys.DkimKey | None:
    matching = [key for key in found if key.algorithm is algorithm]
    preferred = [key for key in matching if key.selector == keys.DEFAULT_SELECTOR]
    chosen = preferred or matching
    return chosen[0] if chosen else None


def _candidate_domains(raw: bytes, sender: str) -> list[str]:
    """From-header domain first, then the envelope sender's domain, deduplicated."""
    domains: list[str] = []
    header, _ = split_message(raw)
    from_value = first_value(header, "from")
    if from_value:
        for address in parse_address_list(from_value):
            host = address[3]
            if address[2] is not None and host:
                domains.append(host.lower().rstrip("."))
    if "@" in sender:
        domains.append(sender.rpartition("@")[2].lower())
    return [d for d in dict.fromkeys(domains) if d and d != "missing_domain"]
