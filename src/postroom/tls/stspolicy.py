"""The MTA-STS policy we publish for our hosted domains (RFC 8461 §3.2) and its id.

Owns the text of `https://mta-sts.DOMAIN/.well-known/mta-sts.txt` and the `id=` of the
`_mta-sts` TXT record (RFC 8461 §3.1). The policy listener (tls/policyserver.py) serves
this text and `dns records` / `dns check` (selftest/) print and verify this id, so the
two can never disagree.

Invariants: the id is derived from the policy text alone (a digest), so it is stable
across restarts and nodes and changes exactly when the served text changes — MTA_STS_MODE,
MTA_STS_MAX_AGE or the MX host (RFC 8461 §3.1: senders refetch only when the id changes).
The id is 1-32 letters or digits (sts-id). Lines end in CRLF (§3.2 ABNF).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from postroom.config import Config

WELL_KNOWN_PATH = "/.well-known/mta-sts.txt"  # RFC 8461 §3.3
POLICY_HOST_LABEL = "mta-sts"  # RFC 8461 §3.3: the policy host is mta-sts.DOMAIN
ID_LENGTH = 20  # hex digits of the digest: 80 bits, well under sts-id's 32


@dataclass(frozen=True, slots=True)
class StsPolicy:
    mode: str  # "testing" | "enforce" | "none" (RFC 8461 §5; none: §8.3 withdrawal)
    mx: tuple[str, ...]  # the MX hosts senders may deliver to (OVERRIDE_HOSTNAME)
    max_age: int  # seconds (RFC 8461 §3.2: at most 31557600)

    @property
    def text(self) -> str:
        lines = ["version: STSv1", f"mode: {self.mode}",
                 *(f"mx: {host}" for host in self.mx), f"max_age: {self.max_age}"]
        return "".join(line + "\r\n" for line in lines)

    @property
    def lines(self) -> list[str]:
        return self.text.splitlines()

    @property
    def id(self) -> str:
        return policy_id(self.text)


def policy_id(text: str) -> str:
    """The `_mta-sts` TXT id of a policy text: stable, and new whenever the text is."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:ID_LENGTH]


def txt_value(policy: StsPolicy) -> str:
    """The rdata of `_mta-sts.DOMAIN` announcing `policy` (RFC 8461 §3.1)."""
    return f"v=STSv1; id={policy.id}"


def policy_host(domain: str) -> str:
    return f"{POLICY_HOST_LABEL}.{domain}"


def hosted_domain_of(host: str) -> str | None:
    """`example.org` for the policy host `mta-sts.example.org` (any case, a trailing dot,
    a port), None for any other host."""
    name = host.strip().lower()
    if name.startswith("["):
        return None  # an IP literal is no policy host
    name = name.rsplit(":", 1)[0] if name.count(":") == 1 else name
    name = name.rstrip(".")
    prefix = POLICY_HOST_LABEL + "."
    if not name.startswith(prefix) or len(name) == len(prefix):
        return None
    return name[len(prefix):]


def policy_for(config: Config) -> StsPolicy:
    """The policy of every hosted domain: they all have OVERRIDE_HOSTNAME as their MX
    (the one `dns records` prints), so they share one text and one id."""
    return StsPolicy(mode=config.mta_sts_mode, mx=(config.hostname,),
                     max_age=config.mta_sts_max_age)
