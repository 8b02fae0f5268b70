"""Greylisting at RCPT, with postgrey's semantics (issue 18, ENABLE_POSTGREY).

Owns the triplet key and the decision. A triplet is (the client's network — IPv4 /24,
IPv6 /64, as postgrey's --lookup-by-subnet, so a sender's pool of outbound hosts counts
as one —, the envelope sender normalised, the recipient). Its first attempt, and every
attempt until POSTGREY_DELAY seconds have passed since, is answered
`451 4.7.1 <POSTGREY_TEXT>`; later attempts pass and count for the client. A client with
POSTGREY_AUTO_WHITELIST_CLIENTS successful retries passes at once (0: never); triplets
and clients not seen for POSTGREY_MAX_AGE days are forgotten.

Invariants: the state is in the store (`GreylistStore`), so every node of one database
agrees; authenticated, submission and TRUSTED_NETWORKS clients, and clients a DNSWL
lists, are never delayed; a store or DNS failure lets the mail through (`fail_open`):
greylisting is a delay, not a verdict, and must not turn an outage into lost mail.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re

from postroom.checks.api import ACCEPT, CheckReply, Envelope, Verdict, refuse
from postroom.checks.dnsbl import DnsLists
from postroom.clock import Clock, SystemClock
from postroom.config import Config
from postroom.store.greylist_api import GreylistStore

EXPIRE_EVERY = dt.timedelta(hours=1)  # how often stale rows are swept, per process
_DIGITS = re.compile(r"\d+")


def client_network(ip: str) -> str:
    """The key of the client's network: "192.0.2" for 192.0.2.0/24, the first four
    groups of an IPv6 /64 ("2001:db8:0:1"); an IPv4-mapped address as IPv4."""
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if isinstance(address, ipaddress.IPv4Address):
        return str(address).rsplit(".", 1)[0]
    groups = address.exploded.split(":")[:4]
    return ":".join(group.lstrip("0") or "0" for group in groups)


def sender_key(sender: str) -> str:
    """The sender as postgrey compares it: lower case, digit runs of the local part as
    "#", so VERP and BATV senders that differ per message form one triplet."""
    local, at, domain = sender.lower().rpartition("@")
    if not at:
        return _DIGITS.sub("#", sender.lower())
    return _DIGITS.sub("#", local) + "@" + domain


class GreylistCheck:
    name = "greylist"
    timeout: float | None = 10.0
    fail_open = True

    def __init__(self, config: Config, store: GreylistStore, lists: DnsLists | None = None,
                 clock: Clock | None = None) -> None:
        self.is_enabled = config.enable_postgrey
        self.delay = dt.timedelta(seconds=config.postgrey_delay)
        self.max_age = dt.timedelta(days=config.postgrey_max_age)
        self.whitelist_after = config.postgrey_auto_whitelist_clients
        self.reply = CheckReply(451, "4.7.1", config.postgrey_text)
        self._store = store
        self._lists = lists
        self._clock = clock or SystemClock()
        self._expired_at: dt.datetime | None = None

    async def on_rcpt(self, envelope: Envelope, address: str) -> Verdict:
        client = envelope.client
        if (not self.is_enabled or client.auth_user or client.is_submission
                or client.is_trusted):
            return ACCEPT
        now = self._clock.now()
        await self._expire(now)
        network = client_network(client.ip)
        if await self._is_whitelisted(network, now) or await self._is_allowlisted(envelope):
            return ACCEPT
        sender, recipient = sender_key(envelope.sender), address.lower()
        entry = await self._store.greylist_seen(network, sender, recipient, now,
                                                now - self.max_age)
        waited = now - entry.first_seen
        if waited >= self.delay:
            await self._store.greylist_passed(network, sender, recipient, now)
            return ACCEPT
        left = (self.delay - waited).total_seconds()
        return refuse(self.reply, f"greylisted {network} <{sender}> <{recipient}> "
                                  f"for {left:.0f}s more")

    async def _is_whitelisted(self, network: str, now: dt.datetime) -> bool:
        if not self.whitelist_after:
            return False
        known = await self._store.greylist_client(network, now - self.max_age)
        return known is not None and known.passes >= self.whitelist_after

    async def _is_allowlisted(self, envelope: Envelope) -> bool:
        if self._lists is None or not self._lists.allow_zones:
            return False
        address = self._lists.should_query(envelope.client)
        return address is not None and await self._lists.is_allowlisted(address)

    async def _expire(self, now: dt.datetime) -> None:
        if self._expired_at is not None and now - self._expired_at < EXPIRE_EVERY:
            return
        self._expired_at = now
        await self._store.expire_greylist(now - self.max_age)
