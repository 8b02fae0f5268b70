"""What outbound delivery learns about TLS with each next hop, for TLS-RPT (RFC 8460).

Owns the `TlsOutcome` record and the `TlsOutcomeSink` the queue worker reports to; the
reports service (reports/) implements the sink, stores outcomes and sends the daily
reports. Invariant: `record` never blocks and never raises — delivery must not wait on,
or fail because of, reporting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

PolicyType = Literal["sts", "tlsa", "no-policy-found"]  # RFC 8460 §4.4 policy-type


@dataclass(frozen=True, slots=True)
class TlsOutcome:
    """One TLS session attempt (or its failure) with one MX of one recipient domain."""

    policy_domain: str  # the recipient domain whose policy applied (RFC 8460 §4.4)
    policy_type: PolicyType
    # The policy as RFC 8460 §4.4 policy-string wants it: the MTA-STS policy's lines, or
    # each TLSA record in presentation form; empty for no-policy-found.
    policy_strings: tuple[str, ...]
    mx_host: str  # the MX host name tried
    receiving_ip: str  # its address ("" when no connection was made)
    # None on a successful TLS session; else an RFC 8460 §4.3 result-type such as
    # "starttls-not-supported", "certificate-host-mismatch", "certificate-expired",
    # "certificate-not-trusted", "validation-failure", "tlsa-invalid", "dnssec-invalid",
    # "dane-required", "sts-policy-fetch-error", "sts-policy-invalid", "sts-webpki-invalid".
    failure: str | None = None
    detail: str = ""  # failure-reason-code: a short human-readable reason


class TlsOutcomeSink(Protocol):
    def record(self, outcome: TlsOutcome) -> None:
        """Note one outcome; never blocks, never raises."""
        ...


class DiscardOutcomes:
    """The sink when TLS-RPT is off (ENABLE_TLSRPT=0)."""

    def record(self, outcome: TlsOutcome) -> None:
        return None
