"""Recording inbound DMARC evaluations for the aggregate reports we send (RFC 7489 §7.2).

Owns the facts a report row carries (`Evaluation`: source IP, identifiers, the policy
evaluated, DKIM and SPF results, override reasons — RFC 7489 Appendix C RecordType) and
their buffer: `DmarcRecorder.record` is called by checks/dmarc.py for every evaluation and
only counts in memory; a background task writes the counts in one transaction every
`FLUSH_SECONDS` (or sooner once `FLUSH_AT` distinct rows wait), so the SMTP path never
waits for the store.

Invariants: `record` never raises and never awaits; the buffer holds at most
`MAX_BUFFERED` distinct rows (past it, new rows are dropped and counted in the log: a
store that cannot keep up must not grow memory without bound); at most `MAX_DKIM`
signatures are kept per row; a failed write keeps the counts for the next flush; `stop`
writes what is left. Rows are counted per UTC day of the evaluation.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import ipaddress
import json
import logging
from dataclasses import asdict, dataclass

from postroom.clock import Clock
from postroom.loops import cancel_and_wait, wait_event
from postroom.mailauth.dkim import DkimResult
from postroom.mailauth.dmarc import DmarcResult, DmarcVerdict
from postroom.mailauth.spf import SpfResult
from postroom.store.api import Store
from postroom.store.dmarcreports_api import DmarcCount, DmarcPolicySeen

log = logging.getLogger(__name__)

FLUSH_SECONDS = 10.0
FLUSH_AT = 500  # distinct rows waiting: flush now
MAX_BUFFERED = 20_000
MAX_DKIM = 5  # signatures reported per row
MAX_FIELD = 255  # characters kept of a domain or address (hostile senders)


@dataclass(frozen=True, slots=True)
class DkimFact:
    domain: str
    selector: str
    result: str  # Appendix C DKIMResultType


@dataclass(frozen=True, slots=True)
class Evaluation:
    """One report row's identity (its count is kept beside it)."""

    source_ip: str
    header_from: str
    envelope_from: str  # the MAIL FROM domain, or the HELO name for a null sender
    disposition: str  # none / quarantine / reject: what we applied
    dkim_aligned: bool
    spf_aligned: bool
    reasons: tuple[tuple[str, str], ...]  # (PolicyOverrideType, comment)
    dkim: tuple[DkimFact, ...]
    spf_domain: str
    spf_scope: str  # mfrom / helo
    spf_result: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Evaluation:
        data = json.loads(text)
        data["reasons"] = tuple(tuple(pair) for pair in data["reasons"])
        data["dkim"] = tuple(DkimFact(**item) for item in data["dkim"])
        return cls(**data)


def report_ip(ip: str) -> str:
    """The address as the Appendix C IPAddress pattern takes it: IPv6 written out in
    full (the pattern has no `::`), an IPv4-mapped IPv6 address as IPv4."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return address.exploded
    return str(address)


def override_reasons(result: DmarcResult) -> tuple[tuple[str, str], ...]:
    """Why the disposition differs from the policy (Appendix C PolicyOverrideReason)."""
    override = getattr(result, "override", None)
    if override is not None:
        return ((str(override), result.reason[:MAX_FIELD]),)
    if result.result is DmarcVerdict.FAIL and result.policy is not None \
            and result.disposition is not result.policy:
        return (("sampled_out", ""),)
    return ()


def evaluation_of(ip: str, spf: SpfResult | None, dkim: list[DkimResult],
                  result: DmarcResult) -> Evaluation:
    """The report row of one DMARC evaluation."""
    spf_domain = spf.domain if spf is not None else ""
    scope = "helo" if spf is not None and spf.property_name == "smtp.helo" else "mfrom"
    return Evaluation(
        source_ip=report_ip(ip), header_from=result.from_domain[:MAX_FIELD],
        envelope_from=spf_domain.lower()[:MAX_FIELD], disposition=str(result.disposition),
        dkim_aligned=result.dkim_aligned, spf_aligned=result.spf_aligned,
        reasons=override_reasons(result),
        dkim=tuple(DkimFact(d.domain.lower()[:MAX_FIELD], d.selector[:MAX_FIELD],
                            str(d.result)) for d in dkim[:MAX_DKIM]),
        spf_domain=spf_domain.lower()[:MAX_FIELD], spf_scope=scope,
        spf_result=str(spf.result) if spf is not None else "none")


def policy_json(result: DmarcResult) -> str:
    """The policy published (Appendix C PolicyPublishedType) and the rua, as JSON."""
    record = result.record
    assert record is not None
    return json.dumps({
        "domain": result.policy_domain, "p": str(record.policy),
        "sp": str(record.subdomain_policy or record.policy), "pct": record.pct,
        "adkim": str(record.adkim), "aspf": str(record.aspf), "fo": record.fo,
        "rua": list(record.rua)}, sort_keys=True)


class DmarcRecorder:
    """The buffer between checks/dmarc.py and the store."""

    def __init__(self, store: Store, clock: Clock, *,
                 flush_seconds: float = FLUSH_SECONDS) -> None:
        self.store = store
        self.clock = clock
        self.flush_seconds = flush_seconds
        self._counts: dict[tuple[dt.date, str, str], int] = {}
        self._policies: dict[tuple[dt.date, str], str] = {}
        self._dropped = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def record(self, ip: str, spf: SpfResult | None, dkim: list[DkimResult],
               result: DmarcResult) -> None:
        """Count one evaluation (checks/dmarc.py). Only evaluations that found a DMARC
        record with a policy domain are reported (§7.2: reports go to its rua)."""
        if result.record is None or not result.policy_domain or not result.record.rua:
            return
        try:
            day = self.clock.now().astimezone(dt.UTC).date()
            domain = result.policy_domain.lower()
            key = (day, domain, evaluation_of(ip, spf, dkim, result).to_json())
            if key not in self._counts and len(self._counts) >= MAX_BUFFERED:
                self._dropped += 1
                return
            self._counts[key] = self._counts.get(key, 0) + 1
            self._policies[(day, domain)] = policy_json(result)
            if len(self._counts) >= FLUSH_AT:
                self._wake.set()
        except Exception:  # recording must never cost the message its delivery
            log.exception("DMARC evaluation not recorded")

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="dmarc-recorder")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        await self.flush()

    async def _run(self) -> None:
        while True:
            await wait_event(self._wake, self.flush_seconds)
            self._wake.clear()
            await self.flush()

    async def flush(self) -> int:
        """Write what waits; the rows written (0 on failure: they wait for the next)."""
        async with self._lock:
            counts, self._counts = self._counts, {}
            policies, self._policies = self._policies, {}
            if self._dropped:
                log.warning("%d DMARC evaluations not recorded: buffer full", self._dropped)
                self._dropped = 0
            if not counts and not policies:
                return 0
            rows = [DmarcCount(day, domain, _digest(record), record, count)
                    for (day, domain, record), count in counts.items()]
            seen = [DmarcPolicySeen(day, domain, policy)
                    for (day, domain), policy in policies.items()]
            try:
                await self.store.add_dmarc_evaluations(rows, seen)
            except Exception as error:
                log.warning("DMARC evaluations not written yet: %s", error)
                self._merge_back(counts, policies)
                return 0
            return len(rows)

    def _merge_back(self, counts: dict[tuple[dt.date, str, str], int],
                    policies: dict[tuple[dt.date, str], str]) -> None:
        for key, count in counts.items():
            if key in self._counts or len(self._counts) < MAX_BUFFERED:
                self._counts[key] = self._counts.get(key, 0) + count
        for day_domain, policy in policies.items():
            self._policies.setdefault(day_domain, policy)


def _digest(record: str) -> str:
    return hashlib.sha256(record.encode()).hexdigest()[:32]

