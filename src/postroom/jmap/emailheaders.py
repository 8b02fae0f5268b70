"""JMAP Email header properties (RFC 8621 §4.1.2, §4.1.3): names and parsed forms.

Owns:
- reading and validating a header property name `header:{field-name}[:as{Form}][:all]`
  (`parse_header_property`), refusing a form §4.1.2 does not define on that field;
- computing each parsed form (Raw, Text, Addresses, GroupedAddresses, MessageIds, Date,
  URLs) from one field's value bytes, and the last-instance / `:all` selection;
- the convenience properties of §4.1.3 (messageId … sentAt) and `headers`, for the
  message and for body parts alike (`header_properties`).

Invariants: the form functions never raise for any bytes and return JSON-ready values
(str, list, dict, None); the only error raised here is InvalidArguments, for a property
name; the work is linear in the header's size (addresses are read by
mail/originators.py, linear; its rare failures fall back to the stdlib parser on at most
FALLBACK_ADDRESS_CHARS characters). Sans-IO.
"""

from __future__ import annotations

import codecs
import datetime as dt
import email.headerregistry
import email.utils
import functools
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from postroom.errors import BadSyntax
from postroom.mail.headers import HeaderField, decode_words, parse_header_fields, unfold
from postroom.mail.originators import AddressList, Group, Mailbox, parse_addresses

# Field text the stdlib address parser reads when ours refuses a field: its tokenizer
# copies the rest of the value per token, so its cost grows with the square of this.
FALLBACK_ADDRESS_CHARS = 8192
_DATE_CHARS = 256  # a date-time is ~40 characters; no date parser needs more
_HEADER_PREFIX = "header:"
# RFC 8621 §4.1.3: any printable ASCII character but the colon.
_FIELD_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+")
# RFC 2047 §2 encoded-word, as one whole whitespace-delimited token.
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?[bBqQ]\?[^?\s]*\?=")
_BLANKS = re.compile(r"([ \t]+)")
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u0080-\U0010ffff-]+"
                       r"(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u0080-\U0010ffff-]+)*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MESSAGE_ID_TOKEN = re.compile(r"<([^<>]*)>|[<>]")
_URL_ITEM = re.compile(r"[ \t]*<([^<>]*)>[ \t]*(?:,|\Z)")
# Codecs Python has that are no MIME charset: decoding with them means something else.
_NOT_CHARSETS = frozenset({"idna", "punycode", "unicode_escape", "raw_unicode_escape",
                           "undefined", "mbcs", "oem"})  # fmt: skip
# Labels mailers use for a superset Python decodes under another name.
_CHARSET_SUPERSETS = {"gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030"}


class InvalidArguments(BadSyntax, ValueError):
    """A property name Email/get cannot accept; the method answers `invalidArguments`
    (RFC 8620 §3.6.2, RFC 8621 §4.1.2: a form a field does not allow)."""


class HeaderForm(Enum):
    """RFC 8621 §4.1.2.1-7; the value is the name after `:as`."""

    RAW = "Raw"
    TEXT = "Text"
    ADDRESSES = "Addresses"
    GROUPED_ADDRESSES = "GroupedAddresses"
    MESSAGE_IDS = "MessageIds"
    DATE = "Date"
    URLS = "URLs"


_FORMS_BY_SUFFIX = {f"as{form.value}": form for form in HeaderForm}
# Fields RFC 5322 (§3.6, and §4.5.6's obsolete Resent-Reply-To) and RFC 2369 define: a
# parsed form other than Raw is allowed on them only where §4.1.2 names the field; any
# other field allows every form.
_DEFINED_FIELDS = frozenset({
    "date", "from", "sender", "reply-to", "to", "cc", "bcc", "message-id", "in-reply-to",
    "references", "subject", "comments", "keywords", "resent-date", "resent-from",
    "resent-sender", "resent-to", "resent-cc", "resent-bcc", "resent-message-id",
    "resent-reply-to", "return-path", "received",
    "list-help", "list-unsubscribe", "list-subscribe", "list-post", "list-owner",
    "list-archive",
})  # fmt: skip
_ADDRESS_FIELDS = frozenset({
    "from", "sender", "reply-to", "to", "cc", "bcc", "resent-from", "resent-sender",
    "resent-reply-to", "resent-to", "resent-cc", "resent-bcc",
})  # fmt: skip
_FORM_FIELDS: dict[HeaderForm, frozenset[str]] = {
    HeaderForm.TEXT: frozenset({"subject", "comments", "keywords", "list-id"}),  # §4.1.2.2
    HeaderForm.ADDRESSES: _ADDRESS_FIELDS,  # §4.1.2.3
    HeaderForm.GROUPED_ADDRESSES: _ADDRESS_FIELDS,  # §4.1.2.4
    HeaderForm.MESSAGE_IDS: frozenset(  # §4.1.2.5
        {"message-id", "in-reply-to", "references", "resent-message-id"}),
    HeaderForm.DATE: frozenset({"date", "resent-date"}),  # §4.1.2.6
    HeaderForm.URLS: frozenset({  # §4.1.2.7
        "list-help", "list-unsubscribe", "list-subscribe", "list-post", "list-owner",
        "list-archive"}),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class HeaderProperty:
    """A parsed `header:` property: the field (matched case-insensitively), its form and
    whether every instance is wanted (`:all`) or only the last."""

    field_name: str
    form: HeaderForm = HeaderForm.RAW
    is_all: bool = False


# RFC 8621 §4.1.3: the convenience properties and the header property each stands for.
CONVENIENCE_HEADERS: dict[str, HeaderProperty] = {
    "messageId": HeaderProperty("Message-ID", HeaderForm.MESSAGE_IDS),
    "inReplyTo": HeaderProperty("In-Reply-To", HeaderForm.MESSAGE_IDS),
    "references": HeaderProperty("References", HeaderForm.MESSAGE_IDS),
    "sender": HeaderProperty("Sender", HeaderForm.ADDRESSES),
    "from": HeaderProperty("From", HeaderForm.ADDRESSES),
    "to": HeaderProperty("To", HeaderForm.ADDRESSES),
    "cc": HeaderProperty("Cc", HeaderForm.ADDRESSES),
    "bcc": HeaderProperty("Bcc", HeaderForm.ADDRESSES),
    "replyTo": HeaderProperty("Reply-To", HeaderForm.ADDRESSES),
    "subject": HeaderProperty("Subject", HeaderForm.TEXT),
    "sentAt": HeaderProperty("Date", HeaderForm.DATE),
}


def is_form_allowed(field_name: str, form: HeaderForm) -> bool:
    """RFC 8621 §4.1.2: may `form` be asked of the field `field_name`?"""
    name = field_name.lower()
    if form is HeaderForm.RAW or name not in _DEFINED_FIELDS:
        return True
    return name in _FORM_FIELDS[form]


@functools.lru_cache(maxsize=512)
def parse_header_property(name: str) -> HeaderProperty:
    """`header:{field-name}[:as{Form}][:all]` → HeaderProperty; raises InvalidArguments
    for any other shape, an unknown form, or a form the field does not allow."""
    if not name.startswith(_HEADER_PREFIX):
        raise InvalidArguments(f"{name[:100]!r} is not a header property")
    field_name, *suffixes = name[len(_HEADER_PREFIX) :].split(":")
    if not _FIELD_NAME.fullmatch(field_name):
        raise InvalidArguments(f"invalid header field name in {name[:100]!r}")
    is_all = bool(suffixes) and suffixes[-1] == "all"
    if is_all:
        suffixes.pop()
    form = HeaderForm.RAW
    if len(suffixes) > 1 or (suffixes and suffixes[0] not in _FORMS_BY_SUFFIX):
        raise InvalidArguments(f"invalid suffix in header property {name[:100]!r}")
    if suffixes:
        form = _FORMS_BY_SUFFIX[suffixes[0]]
    if not is_form_allowed(field_name, form):
        raise InvalidArguments(f"the {form.value} form is not defined for {field_name}")
    return HeaderProperty(field_name, form, is_all)


def is_header_property_name(name: str) -> bool:
    """Whether `name` is a valid `header:` property (for validating property lists)."""
    try:
        parse_header_property(name)
    except InvalidArguments:
        return False
    return True


class HeaderBlock:
    """One header section split into fields once, looked up by lower-cased name. Lines
    that are no field (no colon, an mbox "From " line) are left out."""

    __slots__ = ("_by_name", "fields")

    def __init__(self, header: bytes) -> None:
        self.fields: list[HeaderField] = [one for one in parse_header_fields(header)
                                          if one.name]  # fmt: skip
        self._by_name: dict[str, list[bytes]] = {}
        for one in self.fields:
            self._by_name.setdefault(one.name.lower(), []).append(one.value)

    def values(self, field_name: str) -> list[bytes]:
        """The value bytes of every instance of the field, in message order."""
        return self._by_name.get(field_name.lower(), [])


def header_value(block: HeaderBlock, prop: HeaderProperty) -> Any:
    """RFC 8621 §4.1.3: the last instance in the form (null when absent), or with
    `:all` a list of every instance's (empty when absent)."""
    values = block.values(prop.field_name)
    render = _RENDERERS[prop.form]
    if prop.is_all:
        return [render(value) for value in values]
    return render(values[-1]) if values else None


def header_properties(block: HeaderBlock, names: Iterable[str]) -> dict[str, Any]:
    """The values of `headers`, the §4.1.3 convenience properties and `header:`
    properties among `names` (other names are skipped: they are not header facts)."""
    result: dict[str, Any] = {}
    for name in names:
        if name == "headers":
            result[name] = render_headers(block)
        elif name in CONVENIENCE_HEADERS:
            result[name] = header_value(block, CONVENIENCE_HEADERS[name])
        elif name.startswith(_HEADER_PREFIX):
            result[name] = header_value(block, parse_header_property(name))
    return result


def render_headers(block: HeaderBlock) -> list[dict[str, str]]:
    """The `headers` property: every field, in order, name as written, value Raw."""
    return [{"name": one.name, "value": raw_form(one.value)} for one in block.fields]


# -- the forms ----------------------------------------------------------------------------


def raw_form(value: bytes) -> str:
    """§4.1.2.1: the octets after the colon up to the terminating CRLF; runs that are not
    UTF-8 become U+FFFD and NUL octets are dropped."""
    if value.endswith(b"\r\n"):
        value = value[:-2]
    elif value.endswith((b"\n", b"\r")):
        value = value[:-1]
    return value.replace(b"\x00", b"").decode("utf-8", "replace")


def text_form(value: bytes) -> str:
    """§4.1.2.2: unfolded, trimmed, encoded-words decoded, NFC."""
    text = unfold(value).replace("\x00", "")
    return unicodedata.normalize("NFC", decode_encoded_words(text))


def decode_encoded_words(text: str) -> str:
    """RFC 2047 decoding as §4.1.2.2 step 4 wants it: only an encoded-word that is a
    whole whitespace-delimited token and names a known charset is decoded (one touching
    other text breaks the placement rules and stays as written); whitespace between two
    decoded words goes (RFC 2047 §6.2); control characters they encode are dropped."""
    if "=?" not in text:
        return text
    out: list[str] = []
    blank = ""
    previous_was_word = False
    for index, piece in enumerate(_BLANKS.split(text)):
        if index % 2:
            blank = piece
            continue
        decoded = _decode_token(piece)
        if decoded is None or not previous_was_word:
            out.append(blank)
        out.append(piece if decoded is None else decoded)
        previous_was_word = decoded is not None
        blank = ""
    out.append(blank)
    return "".join(out)


def _decode_token(token: str) -> str | None:
    match = _ENCODED_WORD.fullmatch(token)
    if match is None or known_codec(match.group(1).split("*", 1)[0]) is None:
        return None
    return _CONTROL.sub("", decode_words(token))


def known_codec(charset: str | None) -> str | None:
    """Python's codec name for a MIME charset label, or None when unknown (or a codec
    that is not a text encoding: "hex", "rot13", "punycode"…)."""
    if not charset:
        return None
    label = charset.strip().strip('"').lower()
    label = _CHARSET_SUPERSETS.get(label, label)
    try:
        name = codecs.lookup(label).name
        b"A".decode(name, "ignore")  # LookupError for bytes-to-bytes codecs ("hex")
    except (LookupError, ValueError):
        return None
    return None if name in _NOT_CHARSETS else name


def addresses_form(value: bytes) -> list[dict[str, str | None]]:
    """§4.1.2.3: every mailbox of an address-list, groups flattened."""
    return [address for group in grouped_addresses_form(value)
            for address in group["addresses"]]  # fmt: skip


def grouped_addresses_form(value: bytes) -> list[dict[str, Any]]:
    """§4.1.2.4: groups in order; mailboxes outside a group, one run at a time, in a
    group whose name is null. Best effort (§4.1.2.3): a field our strict parser refuses
    is read by the stdlib's lenient one."""
    text = unfold(value)
    parsed = parse_addresses(text, max_addresses=None)
    if isinstance(parsed, AddressList):
        return _groups_of(parsed)
    return _stdlib_groups(text)


def _groups_of(parsed: AddressList) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = []
    loose: list[dict[str, str | None]] | None = None  # the open run of ungrouped mailboxes
    for entry in parsed.entries:
        if isinstance(entry, Group):
            members = [_address(member) for member in entry.members]
            groups.append({"name": _display_name(entry.display_name), "addresses": members})
            loose = None
            continue
        if loose is None:
            loose = []
            groups.append({"name": None, "addresses": loose})
        loose.append(_address(entry))
    return groups


def _address(mailbox: Mailbox) -> dict[str, str | None]:
    return {"name": _display_name(mailbox.display_name), "email": _addr_spec(mailbox)}


def _addr_spec(mailbox: Mailbox) -> str:
    """local@domain; a local part that is no dot-atom is quoted again (RFC 5322 §3.4.1),
    so `"john doe"@example.com` does not come out as `john doe@example.com`."""
    local = mailbox.local_part
    if not _DOT_ATOM.fullmatch(local):
        local = '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return local if mailbox.domain is None else f"{local}@{mailbox.domain}"


def _display_name(text: str | None) -> str | None:
    """§4.1.2.3 name: quotes and quoted-pairs already undone by the parser; encoded-words
    decoded as in the Text form; blanks at the ends trimmed; null when nothing is left."""
    if not text:
        return None
    name = unicodedata.normalize("NFC", decode_encoded_words(text.strip())).strip()
    return name or None


def _stdlib_groups(text: str) -> list[dict[str, Any]]:
    cleaned = _CONTROL.sub(" ", text[:FALLBACK_ADDRESS_CHARS])
    try:
        header = email.headerregistry.HeaderRegistry()("To", cleaned)
        parsed_groups = header.groups  # type: ignore[attr-defined]
    except Exception:  # the stdlib parser has its own bugs on hostile input: best effort
        return []
    groups: list[dict[str, Any]] = []
    for group in parsed_groups:
        members = [{"name": (member.display_name or "").strip() or None,
                    "email": member.addr_spec}
                   for member in group.addresses if _is_plausible(member.addr_spec)]  # fmt: skip
        if group.display_name is None and groups and groups[-1].get("loose"):
            groups[-1]["addresses"].extend(members)
        elif group.display_name is not None or members:
            groups.append({"name": group.display_name, "addresses": members,
                           "loose": group.display_name is None})  # fmt: skip
    return [{"name": group["name"], "addresses": group["addresses"]} for group in groups]


def _is_plausible(addr_spec: str) -> bool:
    # The lenient parser can hand back the junk it could not read as an addr-spec.
    return bool(addr_spec.strip()) and "<" not in addr_spec and ">" not in addr_spec


def message_ids_form(value: bytes) -> list[str] | None:
    """§4.1.2.5: the msg-ids without CFWS and angle brackets; null when the field holds
    none or a bracket is unmatched or empty. Words between ids (RFC 5322 §4.5.4
    obs-in-reply-to phrases) are skipped."""
    text = strip_comments(unfold(value))
    ids: list[str] = []
    for match in _MESSAGE_ID_TOKEN.finditer(text):
        inner = match.group(1)
        identifier = "".join(inner.split()) if inner is not None else ""
        if not identifier:
            return None
        ids.append(identifier)
    return ids or None


def date_form(value: bytes) -> str | None:
    """§4.1.2.6: an RFC 5322 date-time as an RFC 3339 date-time keeping its offset;
    null when it does not parse or names no real moment."""
    text = strip_comments(unfold(value)[: _DATE_CHARS * 4])[:_DATE_CHARS]
    try:
        parsed = email.utils.parsedate_tz(text)
    except (ValueError, IndexError, TypeError, OverflowError):
        return None
    if parsed is None:
        return None
    year, month, day, hour, minute, second = parsed[:6]
    offset = parsed[9] or 0
    try:
        # RFC 5322 §3.3 allows a leap second (60), which datetime does not.
        moment = dt.datetime(year, month, day, hour, minute, min(second, 59))
    except (ValueError, OverflowError, TypeError):
        return None
    if abs(offset) >= 24 * 3600:  # RFC 3339 time-numoffset has hours 00-23
        return None
    return render_date(moment, offset)


def render_date(moment: dt.datetime, offset_seconds: int) -> str:
    """RFC 8620 §1.4 Date: RFC 3339, no fraction, upper-case letters; UTC (and RFC 5322
    `-0000`, an unknown offset, which the stdlib reads as 0) as `Z`."""
    stamp = f"{moment.year:04d}-{moment:%m-%dT%H:%M:%S}"
    if offset_seconds == 0:
        return stamp + "Z"
    sign = "-" if offset_seconds < 0 else "+"
    hours, minutes = divmod(abs(offset_seconds) // 60, 60)
    return f"{stamp}{sign}{hours:02d}:{minutes:02d}"


def urls_form(value: bytes) -> list[str] | None:
    """§4.1.2.7: an RFC 2369 list of `<URL>`s, comma-separated, comments allowed; the
    URLs without brackets and whitespace; null when anything else is in the field."""
    text = strip_comments(unfold(value)).strip()
    urls: list[str] = []
    pos = 0
    while pos < len(text):
        match = _URL_ITEM.match(text, pos)
        if match is None:
            return None
        url = "".join(match.group(1).split())
        if not url:
            return None
        urls.append(url)
        pos = match.end()
    return urls or None


def strip_comments(text: str) -> str:
    """RFC 5322 §3.2.2: the text without its (nested) comments, quoted strings kept
    whole; an unterminated comment runs to the end. One pass, linear."""
    if "(" not in text:
        return text
    out: list[str] = []
    depth = 0
    is_quoted = False
    is_escaped = False
    for char in text:
        if is_escaped:
            is_escaped = False
        elif char == "\\":
            is_escaped = True
        elif depth == 0 and char == '"':
            is_quoted = not is_quoted
        elif not is_quoted and char == "(":
            depth += 1
            continue
        elif depth and char == ")":
            depth -= 1
            continue
        if depth == 0:
            out.append(char)
    return "".join(out)


_RENDERERS: dict[HeaderForm, Callable[[bytes], Any]] = {
    HeaderForm.RAW: raw_form,
    HeaderForm.TEXT: text_form,
    HeaderForm.ADDRESSES: addresses_form,
    HeaderForm.GROUPED_ADDRESSES: grouped_addresses_form,
    HeaderForm.MESSAGE_IDS: message_ids_form,
    HeaderForm.DATE: date_form,
    HeaderForm.URLS: urls_form,
}
