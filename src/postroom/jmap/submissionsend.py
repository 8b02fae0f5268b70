"""Sending one EmailSubmission (RFC 8621 §7.5): from the Email and envelope a client names
to the message handed to SMTP submission's receiver.

Owns the checks before sending, each the JMAP face of what submission on port 587 does:
- the envelope, given or derived from the header (§7: mailFrom from Sender, else From;
  rcptTo the To, Cc and Bcc addresses, once each), with SMTP's limits: MAX_RECIPIENTS
  (tooManyRecipients, as smtp/policy.py's, which a test keeps equal), the message size
  limit (tooLarge), no recipient (noRecipients), recipients that are no address or no
  local user (invalidRecipients);
- SPOOF_PROTECTION (checks/spoofing.py's `owns`): the envelope sender and every From
  address must be the identity's and owned by the user (forbiddenMailFrom,
  forbiddenFrom), every Sender address owned;
- the copy sent: the stored Email without a leading Return-Path and without its Bcc
  field (RFC 5322 §3.6.3: blind recipients must not see each other; a JMAP draft carries
  its Bcc, which an SMTP client removes before sending).
Then the message goes through `MessageAcceptor.accept`, which app.py gives as SMTP
submission's own receiver (smtp/receive.py `Receiver`: the MESSAGE checks, Date and
Message-ID completed, local delivery with the recipients' Sieve and spam filing, remote
recipients queued durably and DKIM-signed by the queue): exactly the path of a message
submitted after AUTH. The client facts say so: an authenticated submission by the user
from the server itself (127.0.0.1, "jmap"), which the Received field records.

Invariants: nothing is handed on unless every check passed; a refusal of the receiver
becomes a SetError carrying its reply text, never a partial send.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from postroom.checks.spoofing import SpoofingCheck
from postroom.delivery.recipients import RoleRoutes, resolve_recipient
from postroom.delivery.transit import AcceptedRecipient, ClientInfo, ReceivedMessage
from postroom.errors import BadSyntax
from postroom.jmap.errors import SetError, SetErrorType, SetFailure
from postroom.jmap.identities import covers
from postroom.mail.address import normalize_domain
from postroom.mail.esmtp import MailParams, RcptParams
from postroom.mail.headers import parse_header_fields, select_header_fields, split_message, unfold
from postroom.mail.originators import AddressList, parse_addresses
from postroom.mailauth.headerscan import Author, HeaderFacts, authors_of, scan_header
from postroom.outbound.model import strip_return_path
from postroom.store.api import Account, Directory
from postroom.store.jmapidentities_api import JmapIdentity

# smtp/policy.py MAX_RECIPIENTS: protocols do not import each other, so the number is
# repeated here and tests/jmap/test_submission.py keeps the two equal.
MAX_RECIPIENTS = 100
FORBIDDEN_FROM = "forbiddenFrom"  # RFC 8621 §7.5 SetErrors
FORBIDDEN_MAIL_FROM = "forbiddenMailFrom"
FORBIDDEN_TO_SEND = "forbiddenToSend"
INVALID_EMAIL = "invalidEmail"
INVALID_RECIPIENTS = "invalidRecipients"
NO_RECIPIENTS = "noRecipients"
TOO_MANY_RECIPIENTS = "tooManyRecipients"
TRY_LATER = "serverUnavailable"  # a 4xx of the receiver: RFC 8620 §3.6.2's word for it
CLIENT_IP = "127.0.0.1"  # the message enters from the server itself
CLIENT_NAME = "jmap"
_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~\u0080-\U0010ffff-"
_LOCAL_PART = re.compile(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*")  # RFC 5321 Dot-string (+UTF-8)


class SubmissionReply(Protocol):
    """An SMTP reply (smtp/replies.py `Reply`)."""

    @property
    def code(self) -> int: ...
    @property
    def status(self) -> str: ...
    @property
    def text(self) -> str: ...


class MessageAcceptor(Protocol):
    """SMTP submission's receiver (smtp/receive.py `Receiver`, app.py builds it with the
    outbound queue and the inbound checks)."""

    spool_dir: Path

    @property
    def has_outbound(self) -> bool: ...

    async def accept(self, message: ReceivedMessage) -> SubmissionReply: ...


@dataclass(frozen=True, slots=True)
class Envelope:
    mail_from: str
    rcpt_to: tuple[str, ...]

    def render(self) -> dict[str, Any]:
        """§7 Envelope: Address objects with no SMTP parameters."""
        return {"mailFrom": {"email": self.mail_from, "parameters": None},
                "rcptTo": [{"email": one, "parameters": None} for one in self.rcpt_to]}

    def to_json(self) -> str:
        return json.dumps(self.render(), ensure_ascii=False, separators=(",", ":"))


def _failure(kind: str, description: str, **extra: Any) -> SetFailure:
    return SetFailure(SetError(kind, description, extra=extra))


def _invalid(names: list[str], description: str) -> SetFailure:
    return SetFailure(SetError.invalid_properties(names, description))


def path_address(text: str) -> str | None:
    """An RFC 5321 path address as written, with the domain canonical; None when it is
    none (quoted local parts and address literals are not sent from here)."""
    local, at, domain = text.rpartition("@")
    if not at or not 0 < len(local) <= 64 or _LOCAL_PART.fullmatch(local) is None:
        return None
    try:
        return f"{local}@{normalize_domain(domain)}"
    except BadSyntax:
        return None


# -- the envelope (§7) ------------------------------------------------------------------------


def _address_object(value: Any, where: str) -> str:
    """An Address's email; its parameters must be null (no extension is offered)."""
    if not isinstance(value, dict) or set(value) - {"email", "parameters"}:
        raise _invalid(["envelope"], f"{where} must be an Address {{email, parameters}}")
    email = value.get("email")
    if not isinstance(email, str):
        raise _invalid(["envelope"], f"{where}.email must be a String")
    if value.get("parameters"):  # submissionExtensions is empty (RFC 8621 §1.3.2)
        raise _invalid(["envelope"], f"{where}: no SMTP parameters are supported")
    return email


def parse_envelope(value: Any) -> Envelope:
    if not isinstance(value, dict) or set(value) != {"mailFrom", "rcptTo"}:
        raise _invalid(["envelope"], "envelope must be {mailFrom, rcptTo}")
    rcpt = value["rcptTo"]
    if not isinstance(rcpt, list):
        raise _invalid(["envelope"], "envelope.rcptTo must be an array of Address")
    recipients = [_address_object(item, f"envelope.rcptTo[{n}]") for n, item in
                  enumerate(rcpt)]  # fmt: skip
    return Envelope(_address_object(value["mailFrom"], "envelope.mailFrom"),
                    tuple(dict.fromkeys(recipients)))


def _recipient_fields(header: bytes) -> list[str] | None:
    """The addresses of every To, Cc and Bcc field, in order; None when one cannot be read."""
    found: list[str] = []
    for field in parse_header_fields(header):
        if field.name.lower() not in ("to", "cc", "bcc"):
            continue
        parsed = parse_addresses(unfold(field.value), None)
        if not isinstance(parsed, AddressList):
            return None
        found.extend(mailbox.address for mailbox in parsed.mailboxes)
    return found


def derive_envelope(header: bytes, facts: HeaderFacts) -> Envelope:
    """§7: mailFrom is the Sender address, else the From address; rcptTo the To, Cc and
    Bcc addresses with duplicates removed."""
    senders = _authors(facts, "sender") if facts.sender_fields else []
    authors = senders or _authors(facts, "from")
    if len(authors) != 1:  # RFC 5322 §3.6.2: several authors need one Sender
        raise _failure(INVALID_EMAIL, "the envelope sender cannot be told from the header",
                       properties=["sender" if senders else "from"])
    recipients = _recipient_fields(header)
    if recipients is None:
        raise _failure(INVALID_EMAIL, "a To, Cc or Bcc field cannot be read",
                       properties=["to", "cc", "bcc"])
    unique = {one.lower(): one for one in reversed(recipients)}  # first spelling kept
    return Envelope(authors[0].address, tuple(reversed(unique.values())))


def _authors(facts: HeaderFacts, name: str) -> list[Author]:
    found = authors_of(facts.sender_fields if name == "sender" else facts.from_fields)
    if found is None:  # read in part: it names nobody for sure (checks/spoofing.py)
        raise _failure(INVALID_EMAIL, f"the {name} field cannot be read", properties=[name])
    return found


# -- the checks -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A submission that passed every check: what to hand to the receiver."""

    envelope: Envelope
    recipients: list[AcceptedRecipient]
    data: bytes  # the message as sent: Return-Path and Bcc removed


def read_email(raw: bytes, hostname: str) -> tuple[bytes, bytes, HeaderFacts]:
    """(header, body, header facts) of a stored Email, Return-Path removed."""
    header, body = split_message(strip_return_path(raw))
    facts = scan_header(io.BytesIO(header), hostname)
    if not facts.from_fields:  # RFC 5322 §3.6: From is required
        raise _failure(INVALID_EMAIL, "the Email has no From field", properties=["from"])
    return header, body, facts


def check_count(envelope: Envelope) -> None:
    if not envelope.rcpt_to:
        raise _failure(NO_RECIPIENTS, "the envelope has no recipient")
    if len(envelope.rcpt_to) > MAX_RECIPIENTS:
        raise _failure(TOO_MANY_RECIPIENTS, f"more than {MAX_RECIPIENTS} recipients",
                       maxRecipients=MAX_RECIPIENTS)
    bad = [one for one in envelope.rcpt_to if path_address(one) is None]
    if bad:
        raise _failure(INVALID_RECIPIENTS, "not addresses: " + ", ".join(bad[:10]),
                       invalidRecipients=bad)


async def check_sender(check: SpoofingCheck, account: Account, identity: JmapIdentity,
                       envelope: Envelope, facts: HeaderFacts) -> None:  # fmt: skip
    """SPOOF_PROTECTION: envelope sender and From are the identity's address and owned;
    every Sender address is owned (checks/spoofing.py's rule)."""
    login = account.address
    mail_from = path_address(envelope.mail_from) if envelope.mail_from else None
    if mail_from is None or not covers(identity.email, mail_from.lower()) \
            or not await check.owns(login, mail_from):
        raise _failure(FORBIDDEN_MAIL_FROM, f"you may not send from <{envelope.mail_from}>"
                       f" with the identity {identity.email}")
    for author in _authors(facts, "from"):
        if not covers(identity.email, author.address) or not await check.owns(
                login, author.address):
            raise _failure(FORBIDDEN_FROM, f"the From address {author.address} is not "
                           f"the identity's ({identity.email}) or not yours")
    for author in _authors(facts, "sender"):
        if not await check.owns(login, author.address):
            raise _failure(FORBIDDEN_FROM, f"the Sender address {author.address} is not yours")


async def resolve_recipients(store: Directory, roles: RoleRoutes, envelope: Envelope,
                             has_outbound: bool) -> list[AcceptedRecipient]:  # fmt: skip
    """Each rcptTo resolved as SMTP's RCPT resolves it: unknown local users are
    invalidRecipients; remote ones need the outbound queue (smtp/policy.py)."""
    accepted, unknown = [], []
    for address in envelope.rcpt_to:
        resolution = await resolve_recipient(store, address, roles)
        if resolution.is_unknown:
            unknown.append(address)
            continue
        if resolution.remote and not resolution.local and not has_outbound:
            raise _failure(FORBIDDEN_TO_SEND, "mail to other servers is not sent from here")
        accepted.append(AcceptedRecipient(address, RcptParams(), resolution.local,
                                          resolution.remote))
    if unknown:
        raise _failure(INVALID_RECIPIENTS, "no such user: " + ", ".join(unknown[:10]),
                       invalidRecipients=unknown)
    return accepted


def without_bcc(header: bytes, body: bytes) -> bytes:
    return select_header_fields(header, ("bcc",), exclude=True) + body


# -- handing on -------------------------------------------------------------------------------


def received_message(acceptor: MessageAcceptor, account: Account, outgoing: Outgoing,
                     now: dt.datetime) -> ReceivedMessage:  # fmt: skip
    """The message as SMTP submission would have it after DATA."""
    queue_id = secrets.token_hex(8).upper()
    addresses = [outgoing.envelope.mail_from, *outgoing.envelope.rcpt_to]
    client = ClientInfo(CLIENT_IP, CLIENT_NAME, is_esmtp=True, auth_user=account.address,
                        is_submission=True)
    params = MailParams(size=len(outgoing.data),
                        is_smtputf8=not all(one.isascii() for one in addresses))
    return ReceivedMessage(queue_id, client, outgoing.envelope.mail_from, params,
                           outgoing.recipients, acceptor.spool_dir / queue_id,
                           len(outgoing.data), now, body=outgoing.data)


def refusal_error(reply: SubmissionReply, max_size: int) -> SetError:
    """The SetError for a receiver's refusal (§7.5 names where one fits)."""
    text = f"{reply.code} {reply.status} {reply.text}".replace("  ", " ")
    if reply.code >= 500 and reply.status == "5.3.4":
        return SetError(SetErrorType.TOO_LARGE, text, extra={"maxSize": max_size})
    if reply.code >= 500 and reply.status.startswith("5.6."):
        return SetError(INVALID_EMAIL, text, properties=("headers",))
    if reply.code >= 500:
        return SetError(FORBIDDEN_TO_SEND, text)
    return SetError(TRY_LATER, text)

