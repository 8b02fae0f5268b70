"""ARC sealing (RFC 8617 §5.1) of mail we forward to outside addresses.

Owns which forwarded mail gets a seal and with which key: mail from strangers on port 25
that an alias sends on to an outside address, and Sieve redirects of such mail (delivery/
sieving.py says which), get the next ARC set (i = n+1): the ARC-Authentication-Results
copy our Authentication-Results of the message (checks/dmarc.py wrote them, with `arc=`
when it came with a chain, which becomes the seal's cv), then ARC-Message-Signature and
ARC-Seal with a DKIM key of ours. Mail our own users send (submission, a login,
TRUSTED_NETWORKS) is DKIM-signed (signing.py), never sealed: there is nothing to vouch for.

The key: the forwarding domain's (the domain of the local address the mail was forwarded
from, RFC 8617 §5.1: the ADMD that handled it), else the SRS domain's (SRS_DOMAINNAME),
else OVERRIDE_HOSTNAME's or its parent domain's; the RSA key DkimSigner would use (ARC
signs with rsa-sha256 only, §4.1.2 via RFC 6376). No key: no seal, logged once per domain.

Why here, on the outbound floor, beside signing.py: the seal is made where the queue
takes the message in (QueueWorker.enqueue_message), once, on the copy the queue stores and
every retry resends, like the DKIM signature, and from the same keys; ordinary mail never
reaches it (no forwarding domain, no work). dkimpy runs in a worker thread (mailauth/arc.py).

Invariants: sealing never blocks forwarding: any failure sends the message unsealed and
logs why.
"""

from __future__ import annotations

import asyncio
import logging

from postroom.config import Config
from postroom.delivery.transit import ReceivedMessage
from postroom.mailauth.arc import seal_message
from postroom.outbound.signing import DkimSigner

log = logging.getLogger(__name__)

_MAX_REMEMBERED = 1000  # domains already logged as keyless (bounded)


def forwarding_domain(message: ReceivedMessage) -> str:
    """The domain of the first local address that sent this message on to an outside
    address, "" when none did or when the sender is one of ours."""
    if message.client.is_ours:
        return ""
    for recipient in message.recipients:
        if recipient.remote:
            return recipient.address.rpartition("@")[2].lower()
    return ""


class ArcSealer:
    def __init__(self, config: Config, signer: DkimSigner) -> None:
        self.config = config
        self.signer = signer
        self._keyless: set[str] = set()

    def candidates(self, domain: str) -> list[str]:
        hostname = self.config.hostname.lower()
        names = [domain.lower(), self.config.srs_domainname.lower(), hostname,
                 hostname.partition(".")[2]]
        return [name for name in dict.fromkeys(names) if name and "." in name]

    async def seal(self, raw: bytes, domain: str) -> bytes:
        """The ARC set to prepend to `raw`, forwarded for `domain`; b"" when none is made."""
        for candidate in self.candidates(domain):
            found = await asyncio.to_thread(self.signer.load_domain_keys, candidate)
            if found is None:
                continue
            try:
                arc_set = await seal_message(raw, found.domain, found.rsa_selector,
                                             found.rsa_pem, self.config.hostname)
            except ValueError as exc:
                log.warning("not ARC-sealing mail forwarded for %s: %s", domain, exc)
                return b""
            if not arc_set:
                log.info("not ARC-sealing mail forwarded for %s: no Authentication-Results "
                         "of ours to seal (or a chain dkimpy ends)", domain)
            return arc_set
        self._log_keyless(domain)
        return b""

    def _log_keyless(self, domain: str) -> None:
        if domain in self._keyless:
            return
        if len(self._keyless) >= _MAX_REMEMBERED:
            self._keyless.clear()
        self._keyless.add(domain)
        log.warning("no DKIM key for %s (nor a fallback domain): mail forwarded for it "
                    "goes out without an ARC seal (`postroom dkim generate %s`)",
                    domain, domain)
