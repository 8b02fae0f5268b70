"""Per-account quotas: what a setting means, whether messages fit, and the warnings
(issue 17; RFC 9208 STORAGE and MESSAGE; docker-mailserver's ENABLE_QUOTAS, DEFAULT_QUOTA
and `setup quota`; Dovecot's quota_warning).

Owns `QuotaPolicy` (the server's side: ENABLE_QUOTAS, DEFAULT_QUOTA, the
POSTFIX_MAILBOX_SIZE_LIMIT cap, MAX_MESSAGES_PER_MAILBOX), `Room` (one read of an account's
usage and setting, judged against the policy: `Room.full_for`), `Full` (which limit an
addition breaks), the quota verbs the CLI runs (`set_quota`, `clear_quota`) and the
warnings delivered to a user's INBOX at 80 % and 95 %.

Invariants:
- The POSTFIX_MAILBOX_SIZE_LIMIT cap (issue 25) applies to every account, quotas on or off;
  a per-account quota may only be lower (`set_quota` refuses more), so a reported STORAGE
  limit is the one enforced. ENABLE_QUOTAS=0 leaves the cap alone in force.
- A setting of None is "the server's default": DEFAULT_QUOTA, else the cap, read at each
  check, so changing DEFAULT_QUOTA changes every account that has no quota of its own
  (Dovecot's default quota_rule works so). 0 is "no per-account limit".
- One `Room` comes from one store query; deciding and warning from it cost nothing more.
  A warning is sent by the one writer whose compare-and-set of the stored level wins, so
  racing deliveries announce a crossing once. The level drops back (without a message)
  when an addition finds usage below it, so the next crossing is announced again.
- Checks precede writes (ARCHITECTURE.md "Limits"): racing writers may overshoot a limit
  by what they add together, never without bound.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import enum
import logging
import secrets
from dataclasses import dataclass, replace

from postroom.clock import display_zone
from postroom.config import Config
from postroom.errors import Refused
from postroom.mail.address import parse_address
from postroom.mail.mimetree import message_meta
from postroom.store.api import NewMessage, Store
from postroom.store.blobs import BlobStore
from postroom.store.errors import NotFound
from postroom.store.quota_api import QuotaUsage

log = logging.getLogger("postroom.quota")

# Dovecot's quota_warning levels as docker-mailserver configures them (percent, highest
# first: Dovecot runs only the first warning whose level an addition crosses).
WARNING_LEVELS = (95, 80)
INBOX = "INBOX"


class Full(enum.Enum):
    """Which limit an addition would break, the cap checked before the quota: where the
    cap stops a message SMTP keeps issue 25's temporary 452 4.2.2; only the quota's own
    refusal is Dovecot's permanent 552 5.2.2 (smtp/receive.py)."""

    MESSAGES = "messages per mailbox"  # MAX_MESSAGES_PER_MAILBOX
    ACCOUNT_SIZE = "account size"  # the POSTFIX_MAILBOX_SIZE_LIMIT cap (issue 25)
    QUOTA = "quota"  # the account's own STORAGE or MESSAGE quota (RFC 9208)

    @property
    def imap_code(self) -> str:
        # RFC 5530 §3: LIMIT is an implementation limit; OVERQUOTA (RFC 9208 §4.3) is
        # what a user can act on by deleting mail.
        return "LIMIT" if self is Full.MESSAGES else "OVERQUOTA"


@dataclass(frozen=True, slots=True)
class QuotaPolicy:
    """The server's side of every quota (all sizes in bytes, 0 = none)."""

    is_enabled: bool = True
    default_storage: int | None = None  # DEFAULT_QUOTA; None: the cap
    cap: int = 0  # POSTFIX_MAILBOX_SIZE_LIMIT
    mailbox_messages: int = 1_000_000  # MAX_MESSAGES_PER_MAILBOX

    @classmethod
    def from_config(cls, config: Config) -> QuotaPolicy:
        return cls(config.enable_quotas, config.default_quota, config.mailbox_size_limit,
                   config.max_messages_per_mailbox)  # fmt: skip

    def storage_limit(self, setting_storage: int | None) -> int:
        """The bytes an account may hold (0 = no limit): its quota, else the default,
        never above the cap."""
        quota = 0
        if self.is_enabled:
            chosen = self.default_storage if setting_storage is None else setting_storage
            quota = self.cap if chosen is None else chosen
        return min((limit for limit in (quota, self.cap) if limit), default=0)

    def message_limit(self, setting_messages: int | None) -> int:
        return (setting_messages or 0) if self.is_enabled else 0


@dataclass(frozen=True, slots=True)
class Room:
    """An account's usage and limits, as one `QuotaStore` read found them."""

    usage: QuotaUsage
    policy: QuotaPolicy

    @property
    def storage_limit(self) -> int:
        return self.policy.storage_limit(self.usage.setting.storage)

    @property
    def message_limit(self) -> int:
        return self.policy.message_limit(self.usage.setting.messages)

    def full_for(self, *, messages: int, size: int, adds_to_account: bool = True
                 ) -> Full | None:  # fmt: skip
        """Which limit adding `messages` messages of `size` bytes in all to the mailbox
        read would break. `adds_to_account` False: they stay in the account (MOVE)."""
        if self.usage.mailbox_messages + messages > self.policy.mailbox_messages:
            return Full.MESSAGES
        if not adds_to_account:
            return None
        cap = self.policy.cap
        if cap and self.usage.size + size > cap:
            return Full.ACCOUNT_SIZE
        storage, count = self.storage_limit, self.message_limit
        if (storage and self.usage.size + size > storage) or \
                (count and self.usage.messages + messages > count):
            return Full.QUOTA
        return None

    @property
    def is_over(self) -> bool:
        """Whether usage is past a limit already (mail imported, or racing writers)."""
        storage, count = self.storage_limit, self.message_limit
        return bool((storage and self.usage.size > storage) or
                    (count and self.usage.messages > count))

    def level_after(self, *, size: int = 0, messages: int = 0) -> int:
        """The warning level (0, 80, 95) usage reaches after adding that much; always 0
        with ENABLE_QUOTAS=0 (docker-mailserver then has no quota plugin to warn)."""
        if not self.policy.is_enabled:
            return 0
        used = percent_used(self.usage.size + size, self.storage_limit)
        used = max(used, percent_used(self.usage.messages + messages, self.message_limit))
        return next((level for level in WARNING_LEVELS if used >= level), 0)


def percent_used(used: int, limit: int) -> int:
    """Whole percent of `limit` in use (0 without a limit)."""
    return used * 100 // limit if limit else 0


async def read_room(store: Store, policy: QuotaPolicy, mailbox_id: int) -> Room:
    """The room in the mailbox's account, in one query (NotFound: no such mailbox)."""
    return Room(await store.quota_usage(mailbox_id), policy)


# -- the CLI's verbs --------------------------------------------------------------------
async def set_quota(store: Store, policy: QuotaPolicy, address: str, storage: int,
                    messages: int | None = None) -> None:  # fmt: skip
    """`postroom quota set ADDRESS SIZE [--messages N]` (0: no per-account limit)."""
    canonical = str(parse_address(address))
    if storage < 0 or (messages is not None and messages < 0):
        raise Refused("a quota cannot be negative")
    if policy.cap and storage > policy.cap:
        raise Refused(f"{render_size(storage)} is above POSTFIX_MAILBOX_SIZE_LIMIT "
                      f"({render_size(policy.cap)}), the limit of every account; raise "
                      "that first")  # fmt: skip
    await store.set_quota(canonical, storage, messages or None)


async def clear_quota(store: Store, address: str) -> None:
    """`postroom quota del ADDRESS`: back to the server's default (DEFAULT_QUOTA)."""
    await store.set_quota(str(parse_address(address)), None, None)


def render_size(size: int) -> str:
    """`2G`, `1.5M`, `512K`, `100B`: docker-mailserver's way of writing a quota."""
    for unit, factor in (("T", 1024**4), ("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if size >= factor:
            text = f"{size / factor:.1f}".removesuffix(".0")
            return f"{text}{unit}"
    return f"{size}B"


# -- warnings ---------------------------------------------------------------------------
async def announce_crossing(store: Store, blobs: BlobStore, config: Config, room: Room, *,
                            size: int, messages: int) -> None:  # fmt: skip
    """After `messages` messages of `size` bytes were added to `room`'s account: record a
    new warning level, and when it rose, deliver the warning. Never raises: the mail that
    was added is already acknowledged, and a warning is not worth failing it."""
    level = room.level_after(size=size, messages=messages)
    was = room.usage.setting.warned
    if level == was:
        return
    try:
        if await store.set_quota_warned(room.usage.account_id, level, was=was) and level > was:
            after = replace(room.usage, messages=room.usage.messages + messages,
                            size=room.usage.size + size)
            await deliver_warning(store, blobs, config, Room(after, room.policy), level)
    except Exception:  # logged with its traceback; the delivery stands
        log.exception("quota warning for account %d not delivered", room.usage.account_id)


async def deliver_warning(store: Store, blobs: BlobStore, config: Config, room: Room,
                          level: int) -> None:  # fmt: skip
    """Put the warning for `level` into the account's INBOX (no limit is checked: it is
    small, and refusing it would hide the very news)."""
    inbox = await store.get_mailbox(room.usage.account_id, INBOX)
    if inbox is None:
        raise NotFound(f"account {room.usage.account_id} has no INBOX")
    now = dt.datetime.now(dt.UTC)
    data = render_warning(room, level, hostname=config.hostname,
                          when=now.astimezone(display_zone(config.timezone)))  # fmt: skip
    blob_id = blobs.new_id(len(data))
    try:
        await store.append_message(inbox.id, NewMessage(blob_id, len(data), now, frozenset(),
                                                        message_meta(data)), body=data)
    except BaseException:
        await store.release_blob_if_unused(blob_id)
        raise
    log.info("account %s at %d%% of its quota: warning delivered", room.usage.address, level)


def render_warning(room: Room, level: int, *, hostname: str, when: dt.datetime) -> bytes:
    """The warning message, from the postmaster of the user's domain (as
    docker-mailserver's quota-warning script sends it); RFC 3834 auto-generated."""
    address = room.usage.address
    domain = address.rpartition("@")[2]
    storage, count = room.storage_limit, room.message_limit
    lines = [f"Your mailbox {address} has reached {level}% of its quota."]
    if storage:
        lines.append(f"It holds {render_size(room.usage.size)} of {render_size(storage)}"
                     f" ({percent_used(room.usage.size, storage)}%).")
    if count:
        lines.append(f"It holds {room.usage.messages} of {count} messages"
                     f" ({percent_used(room.usage.messages, count)}%).")
    lines += [
        "", "When it is full, new mail to you is refused: senders are told that your",
        "mailbox is full, and you cannot save drafts or sent messages.", "",
        "To make room, delete messages you no longer need (those with large attachments",
        "first) and empty your Trash and Junk folders: deleted messages count until they",
        "are expunged. If you need more room, ask your mail administrator.",
    ]
    header = [
        f"From: Mail Delivery System <postmaster@{domain}>", f"To: <{address}>",
        f"Subject: Mailbox quota warning: {level}% used",
        f"Date: {email.utils.format_datetime(when)}",
        f"Message-ID: <quota.{secrets.token_hex(8)}@{hostname}>",
        "Auto-Submitted: auto-generated", "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit",
    ]  # 8bit only for an internationalized address (RFC 6532)
    return ("\r\n".join([*header, "", *lines]) + "\r\n").encode("utf-8")
