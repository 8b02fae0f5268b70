"""What a Sieve evaluation asks delivery to do: the action values and the result.

Owns the action dataclasses and `SieveResult`. Delivery (services floor) carries them
out: storing, queueing a redirect or a vacation reply, refusing at SMTP time.

Invariants: actions are plain immutable values in the order the script ran them, with
duplicates already merged (RFC 5228 §2.10.3: two fileinto of one mailbox store once);
`implicit_keep` already accounts for every cancelling action (§2.10.2); a runtime error
leaves `error` set and the actions that ran before it are not to be trusted: delivery
then keeps the message in INBOX (§2.10.6) and tells the user once.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Keep:
    flags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FileInto:
    mailbox: str
    flags: tuple[str, ...] = ()
    create: bool = False  # RFC 5490 :create
    special_use: str = ""  # RFC 8579 :specialuse
    copy: bool = False  # RFC 3894 :copy (kept for display; implicit keep already decided)


@dataclass(frozen=True, slots=True)
class Redirect:
    address: str
    copy: bool = False


@dataclass(frozen=True, slots=True)
class Discard:
    pass


@dataclass(frozen=True, slots=True)
class Reject:
    reason: str
    is_ereject: bool = False  # RFC 5429 ereject: refuse in the protocol whenever possible


@dataclass(frozen=True, slots=True)
class Vacation:
    reason: str
    handle: str  # RFC 5230 §4.2: same handle = same response for the once-per-period rule
    seconds: int  # :days × 86400 or :seconds (RFC 6131); the caller clamps to its limits
    subject: str = ""
    from_address: str = ""
    addresses: tuple[str, ...] = ()
    is_mime: bool = False


@dataclass(frozen=True, slots=True)
class DuplicateMark:
    """RFC 7352: record this id for this handle if delivery succeeds (§3.1)."""

    handle: str
    value: str
    seconds: int


Action = Keep | FileInto | Redirect | Discard | Reject | Vacation


@dataclass(slots=True)
class SieveResult:
    actions: list[Action] = field(default_factory=list)
    implicit_keep: bool = True
    implicit_keep_flags: tuple[str, ...] = ()  # RFC 5232 §3: the internal flags at the end
    edited_message: bytes | None = None  # editheader changed the header (RFC 5293)
    duplicates: list[DuplicateMark] = field(default_factory=list)
    error: str = ""  # a runtime error: keep in INBOX (RFC 5228 §2.10.6)

    @property
    def keeps(self) -> bool:
        """Whether the message lands in INBOX (explicit or implicit keep)."""
        return self.implicit_keep or any(isinstance(action, Keep) for action in self.actions)
