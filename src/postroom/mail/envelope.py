"""IMAP ENVELOPE data from a message header block (RFC 9051 §7.5.2).

Owns the IMAP shape of address lists; reading them is mail/originators.py's (display names
and groups kept as written: the stdlib decodes encoded-words and flattens groups, and IMAP
wants neither).

Output shape: a list of ten items — date, subject, from, sender, reply-to, to, cc, bcc,
in-reply-to, message-id — each `str` (unfolded raw header text, encoded-words NOT
decoded) or None (NIL); address fields are lists of [name, adl, mailbox, host].
Invariants: never raises on any bytes; sender and reply-to default to from.
"""

from __future__ import annotations

from postroom.mail.headers import first_values
from postroom.mail.originators import Group, Mailbox, Unparsable, parse_addresses

Address = list[str | None]
Envelope = list["str | list[Address] | None"]

# Dovecot's placeholder when an address has no domain: a NIL host would read as a group
# marker (RFC 9051 §7.5.2), so something must be there.
MISSING_DOMAIN = "MISSING_DOMAIN"
# The one address shown for a field the parser refuses (a placeholder, like MISSING_DOMAIN).
INVALID_ADDRESS = "INVALID_ADDRESS"
_ENVELOPE_FIELDS = (
    "date", "subject", "from", "sender", "reply-to", "to", "cc", "bcc", "in-reply-to",
    "message-id",
)  # fmt: skip


def render_envelope(header: bytes) -> Envelope:
    """The ENVELOPE of a message whose header block is `header`."""
    values = first_values(header, _ENVELOPE_FIELDS)
    from_ = _addresses(values.get("from"))
    return [
        values.get("date") or None,
        values.get("subject") or None,
        from_,
        _addresses(values.get("sender")) or from_,
        _addresses(values.get("reply-to")) or from_,
        _addresses(values.get("to")),
        _addresses(values.get("cc")),
        _addresses(values.get("bcc")),
        values.get("in-reply-to") or None,
        values.get("message-id") or None,
    ]


def _addresses(value: str | None) -> list[Address] | None:
    return (parse_address_list(value) or None) if value else None


def parse_address_list(text: str) -> list[Address]:
    """RFC 5322 §3.4 address-list → IMAP address structures, groups as start/end markers.

    The parser is `originators.parse_addresses`, the one SMTP's checks use, so a client
    is shown the addresses that were checked. A field it cannot read is shown as one
    INVALID_ADDRESS@MISSING_DOMAIN, never as the part that happened to parse.
    """
    parsed = parse_addresses(text, max_addresses=None)
    if isinstance(parsed, Unparsable):
        return [[None, None, INVALID_ADDRESS, MISSING_DOMAIN]]
    result: list[Address] = []
    for entry in parsed.entries:
        if isinstance(entry, Group):
            result.append([None, None, entry.display_name, None])  # group start
            result.extend(_render(member) for member in entry.members)
            result.append([None, None, None, None])  # group end
        else:
            result.append(_render(entry))
    return result


def _render(mailbox: Mailbox) -> Address:
    return [mailbox.display_name, mailbox.route, mailbox.local_part or None,
            mailbox.domain or MISSING_DOMAIN]
