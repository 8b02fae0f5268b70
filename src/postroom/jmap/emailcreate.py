"""Email/set create (RFC 8621 §4.6): an Email object as RFC 5322 bytes.

Owns `build_message`, which turns the properties a client may set into a message:
- header fields from the convenience properties (messageId, inReplyTo, references,
  sender, from, to, cc, bcc, replyTo, subject, sentAt) and `header:Name[:asForm][:all]`
  properties in the Raw, Text, Addresses, MessageIds, Date and URLs forms; the header
  block is written here (RFC 2047 encoded words for non-ASCII text and display names,
  folded), with Date and Message-ID added when absent (§4.6: the server MUST);
- the body from `bodyStructure`, or from textBody / htmlBody / attachments
  (multipart/alternative for text and HTML, multipart/related for inline parts with a
  cid beside HTML, multipart/mixed for the other attachments); a part's content comes
  from bodyValues (partId, text/* only, sent as quoted-printable UTF-8) or from a blob
  the account holds (blobId: an upload, a message, a part of a message).
Everything §4.6 forbids (headers, server-set properties, Content-* fields on the Email,
a property given twice, partId with blobId, charset or size with partId,
Content-Transfer-Encoding, truncated body values, CR or LF in a header value) is
invalidProperties naming the property. Bounded: MAX_CREATE_PARTS parts, MAX_CREATE_DEPTH
levels, and the message (blobs included, read only after their sizes are checked) no
larger than POSTFIX_MESSAGE_SIZE_LIMIT (tooLarge).
Sans-IO but for `BlobSource`, which the caller implements over the store.
"""

from __future__ import annotations

import datetime as dt
import email.policy
import email.utils
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.header import Header
from email.message import MIMEPart
from typing import Any

from postroom.jmap.emailheaders import (
    CONVENIENCE_HEADERS,
    HeaderForm,
    HeaderProperty,
    InvalidArguments,
    parse_header_property,
)
from postroom.jmap.emailmeta import BLOB_NOT_FOUND
from postroom.jmap.errors import SetError, SetErrorType, SetFailure
from postroom.jmap.types import parse_date

MAX_CREATE_PARTS = 256  # body parts of one created Email
MAX_CREATE_DEPTH = 16  # multipart nesting of one created Email
_POLICY = email.policy.SMTP
# Set by the server, or given as separate properties only (§4.6).
_FORBIDDEN = frozenset({"id", "blobId", "threadId", "size", "receivedAt", "hasAttachment",
                        "preview", "headers"})  # fmt: skip
_EMAIL_OWN = frozenset({"mailboxIds", "keywords", "bodyStructure", "bodyValues", "textBody",
                        "htmlBody", "attachments"})  # fmt: skip
_PART_OWN = frozenset({"partId", "blobId", "size", "type", "charset", "disposition", "cid",
                       "language", "location", "name", "subParts"})  # fmt: skip
_ADDR_SPEC = re.compile(r"[^\s<>()\[\]\\,;:\"@]+@[^\s<>()\[\]\\,;:\"@]+")
_MESSAGE_ID = re.compile(r"[^\s<>]{1,998}")
_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")
_TOKEN = re.compile(r"[A-Za-z0-9!#$&'*+.^_`|~-]{1,200}")
# Written from a part's own properties (type, disposition, cid, …) or by the server.
_PART_SET_FIELDS = frozenset({"content-type", "content-transfer-encoding",
                              "content-disposition", "content-id", "content-language",
                              "content-location", "mime-version"})  # fmt: skip

# (blob id) → its bytes and size, or None when the account holds no such blob.
BlobSource = Callable[[str, int], Awaitable[bytes | None]]


def _invalid(name: str, why: str) -> SetFailure:
    return SetFailure(SetError.invalid_properties([name], why))


@dataclass(slots=True)
class _Budget:
    """What one created Email may still use: bytes (0 = no limit) and parts."""

    size_limit: int
    used: int = 0
    parts: int = 0

    def take(self, size: int) -> None:
        self.used += size
        if self.size_limit and self.used > self.size_limit:
            raise SetFailure(SetError(SetErrorType.TOO_LARGE,
                                      f"messages are at most {self.size_limit} bytes",
                                      extra={"maxSize": self.size_limit}))  # fmt: skip

    @property
    def left(self) -> int:
        return self.size_limit - self.used if self.size_limit else 1 << 62


# -- header values ------------------------------------------------------------------------------


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise _invalid(name, "a string is expected")
    if "\r" in value or "\n" in value or "\x00" in value:
        raise _invalid(name, "header values hold no line breaks")
    return value


def _folded_text(text: str) -> str:
    charset = "us-ascii" if text.isascii() else "utf-8"
    return Header(text, charset).encode(linesep="\r\n")


def _addresses(value: Any, name: str) -> str:
    if not isinstance(value, list) or not value:
        raise _invalid(name, "a non-empty list of EmailAddress objects is expected")
    rendered = []
    for item in value:
        if not isinstance(item, dict) or set(item) - {"name", "email"}:
            raise _invalid(name, "an EmailAddress is {name, email}")
        address = _text(item.get("email"), name)
        display = _text(item.get("name") or "", name)
        if not address.isascii() or not _ADDR_SPEC.fullmatch(address):
            raise _invalid(name, f"not an address: {address[:80]!r}")
        rendered.append(email.utils.formataddr((display, address), charset="utf-8"))
    return ",\r\n ".join(rendered)


def _message_ids(value: Any, name: str) -> str:
    if not isinstance(value, list) or not value:
        raise _invalid(name, "a non-empty list of message ids is expected")
    ids = [_text(item, name) for item in value]
    if not all(one.isascii() and _MESSAGE_ID.fullmatch(one) for one in ids):
        raise _invalid(name, "a message id has no spaces or angle brackets")
    return "\r\n ".join(f"<{one}>" for one in ids)


def _date(value: Any, name: str) -> str:
    try:
        return email.utils.format_datetime(parse_date(_text(value, name)))
    except ValueError:
        raise _invalid(name, "a Date (RFC 3339) is expected") from None


def _urls(value: Any, name: str) -> str:
    if not isinstance(value, list) or not value:
        raise _invalid(name, "a non-empty list of URLs is expected")
    urls = [_text(item, name) for item in value]
    if not all(url.isascii() and url and not set(url) & set("<> \t") for url in urls):
        raise _invalid(name, "a URL is ASCII without spaces or angle brackets")
    return ",\r\n ".join(f"<{url}>" for url in urls)


def _raw(value: Any, name: str) -> str:
    text = _text(value, name)
    if not text.isascii():
        raise _invalid(name, "a Raw value is ASCII (use the Text form)")
    return text.strip()


_RENDER: dict[HeaderForm, Callable[[Any, str], str]] = {
    HeaderForm.RAW: _raw, HeaderForm.TEXT: lambda value, name: _folded_text(_text(value, name)),
    HeaderForm.ADDRESSES: _addresses, HeaderForm.MESSAGE_IDS: _message_ids,
    HeaderForm.DATE: _date, HeaderForm.URLS: _urls,
}


def header_fields(record: dict[str, Any], own: frozenset[str],
                  ) -> list[tuple[str, str]]:  # fmt: skip
    """(field name, rendered value) of the record's header properties, in order; every
    other property must be one of `own`."""
    fields: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name, value in record.items():
        if name in own or value is None:
            continue
        prop = _header_property(name)
        field_name = prop.field_name.lower()
        if field_name in seen:  # §4.6: one property per header field
            raise _invalid(name, f"{prop.field_name} is given twice")
        seen.add(field_name)
        if prop.form is HeaderForm.GROUPED_ADDRESSES:
            raise _invalid(name, "the GroupedAddresses form cannot be set")
        values = value if prop.is_all else [value]
        if not isinstance(values, list):
            raise _invalid(name, "a list of values is expected with :all")
        fields += [(prop.field_name, _RENDER[prop.form](one, name)) for one in values]
    return fields


def _header_property(name: str) -> HeaderProperty:
    if name in _FORBIDDEN:
        raise _invalid(name, "set by the server")
    prop = CONVENIENCE_HEADERS.get(name)
    if prop is not None:
        return prop
    try:
        return parse_header_property(name)
    except InvalidArguments:
        raise _invalid(name, "not a property an Email can be created with") from None


# -- body parts ---------------------------------------------------------------------------------


class _BodyBuilder:
    def __init__(self, values: dict[str, Any], blobs: BlobSource, budget: _Budget) -> None:
        self.values = values
        self.blobs = blobs
        self.budget = budget
        self.used_values: set[str] = set()

    async def part(self, spec: Any, depth: int, where: str) -> MIMEPart:
        if not isinstance(spec, dict):
            raise _invalid(where, "an EmailBodyPart object is expected")
        self.budget.parts += 1
        if self.budget.parts > MAX_CREATE_PARTS or depth > MAX_CREATE_DEPTH:
            raise _invalid(where, f"at most {MAX_CREATE_PARTS} parts, {MAX_CREATE_DEPTH} deep")
        kind = spec.get("type")
        if kind is not None and not (isinstance(kind, str) and _TYPE.fullmatch(kind.lower())):
            raise _invalid(where, "type is a media type")
        if "subParts" in spec or (kind or "").lower().startswith("multipart/"):
            part = await self._multipart(spec, (kind or "multipart/mixed").lower(), depth, where)
        else:
            part = await self._leaf(spec, (kind or "").lower(), where)
        for field_name, value in header_fields(spec, _PART_OWN):
            if field_name.lower() in _PART_SET_FIELDS:
                raise _invalid(where, f"{field_name} is set from the part's properties")
            part[field_name] = value.replace("\r\n", "")
        return part

    async def _multipart(self, spec: dict[str, Any], kind: str, depth: int,
                         where: str) -> MIMEPart:  # fmt: skip
        children = spec.get("subParts")
        if not kind.startswith("multipart/") or not isinstance(children, list) or not children:
            raise _invalid(where, "a multipart part has a type multipart/* and subParts")
        if set(spec) & {"partId", "blobId", "charset", "name", "disposition"}:
            raise _invalid(where, "a multipart part has no content of its own")
        part = MIMEPart(policy=_POLICY)
        part["Content-Type"] = kind
        part.set_payload([await self.part(child, depth + 1, f"{where}/subParts/{n}")
                          for n, child in enumerate(children)])  # fmt: skip
        return part

    async def _leaf(self, spec: dict[str, Any], kind: str, where: str) -> MIMEPart:
        part_id, blob_id = spec.get("partId"), spec.get("blobId")
        part = MIMEPart(policy=_POLICY)
        options = self._content_options(spec, where)
        if (part_id is None) == (blob_id is None):
            raise _invalid(where, "a part has either partId or blobId")
        if part_id is not None:
            if "charset" in spec or "size" in spec or not (kind or "text/plain").startswith(
                    "text/"):  # fmt: skip
                raise _invalid(where, "a partId part is text/*, without charset or size")
            text = self._value(part_id, where)
            self.budget.take(len(text.encode()))  # a lower bound: the end checks exactly
            part.set_content(text, subtype=(kind or "text/plain")[5:], charset="utf-8",
                             cte="quoted-printable", **options)  # fmt: skip
        else:
            data = await self._blob(blob_id, where)
            maintype, _, subtype = (kind or "application/octet-stream").partition("/")
            cte = "8bit" if maintype == "message" else "base64"
            part.set_content(data, maintype, subtype, cte=cte, **options)
        self._locate(part, spec, where)
        return part

    def _locate(self, part: MIMEPart, spec: dict[str, Any], where: str) -> None:
        """Content-Language and Content-Location (RFC 3282, RFC 2557)."""
        language, location = spec.get("language"), spec.get("location")
        if language is not None:
            if not isinstance(language, list) or not all(
                    isinstance(tag, str) and _TOKEN.fullmatch(tag) for tag in language):
                raise _invalid(where, "language is a list of language tags")
            part["Content-Language"] = ", ".join(language)
        if location is not None:
            part["Content-Location"] = _raw(location, where)

    def _content_options(self, spec: dict[str, Any], where: str) -> dict[str, Any]:
        options: dict[str, Any] = {}
        disposition, name, cid = spec.get("disposition"), spec.get("name"), spec.get("cid")
        if disposition is not None:
            if not (isinstance(disposition, str) and _TOKEN.fullmatch(disposition)):
                raise _invalid(where, "disposition is a token")
            options["disposition"] = disposition.lower()
        if name is not None:
            options["filename"] = _text(name, where)
            options.setdefault("disposition", "attachment")
        if cid is not None:
            options["cid"] = f"<{_text(cid, where).strip('<>')}>"
        return options

    def _value(self, part_id: Any, where: str) -> str:
        value = self.values.get(part_id) if isinstance(part_id, str) else None
        if not isinstance(value, dict) or not isinstance(value.get("value"), str):
            raise _invalid(where, f"no bodyValues entry {str(part_id)[:80]!r}")
        if value.get("isEncodingProblem") or value.get("isTruncated"):
            raise _invalid("bodyValues", "isEncodingProblem and isTruncated must be false")
        self.used_values.add(part_id)
        return str(value["value"])

    async def _blob(self, blob_id: Any, where: str) -> bytes:
        if not isinstance(blob_id, str):
            raise _invalid(where, "blobId is an Id")
        data = await self.blobs(blob_id, self.budget.left)
        if data is None:
            raise SetFailure(SetError(BLOB_NOT_FOUND, f"no blob {blob_id}",
                                      extra={"notFound": [blob_id]}))  # fmt: skip
        self.budget.take(len(data))  # a lower bound: the end checks exactly
        return data


def _structure(record: dict[str, Any]) -> Any:
    """bodyStructure, or the tree textBody / htmlBody / attachments make (§4.6)."""
    given = [name for name in ("textBody", "htmlBody", "attachments") if name in record]
    if "bodyStructure" in record:
        if given:
            raise _invalid("bodyStructure", "bodyStructure excludes " + ", ".join(given))
        return record["bodyStructure"]
    text, html = _single(record, "textBody", "text/plain"), _single(record, "htmlBody",
                                                                      "text/html")
    attachments = record.get("attachments") or []
    if not isinstance(attachments, list):
        raise _invalid("attachments", "a list of EmailBodyPart objects is expected")
    body = _alternative(text, html)
    inline = [one for one in attachments if html is not None and isinstance(one, dict)
              and one.get("cid") and one.get("disposition") == "inline"]  # fmt: skip
    if inline:
        body = {"type": "multipart/related", "subParts": [body, *inline]}
    others = [one for one in attachments if one not in inline]
    return {"type": "multipart/mixed", "subParts": [body, *others]} if others else body


def _single(record: dict[str, Any], name: str, kind: str) -> dict[str, Any] | None:
    parts = record.get(name)
    if parts is None:
        return None
    if not isinstance(parts, list) or len(parts) != 1 or not isinstance(parts[0], dict):
        raise _invalid(name, f"{name} holds exactly one {kind} part")
    part = dict(parts[0])
    if part.setdefault("type", kind).lower() != kind:
        raise _invalid(name, f"{name} holds exactly one {kind} part")
    return part


def _alternative(text: dict[str, Any] | None,
                 html: dict[str, Any] | None) -> dict[str, Any]:  # fmt: skip
    if text is not None and html is not None:
        return {"type": "multipart/alternative", "subParts": [text, html]}
    return text or html or {"type": "text/plain", "partId": "\0empty"}


async def build_message(record: dict[str, Any], blobs: BlobSource, *, size_limit: int,
                        hostname: str, now: dt.datetime) -> bytes:  # fmt: skip
    """The RFC 5322 bytes of the Email `record` describes (SetFailure when it cannot)."""
    fields = header_fields(record, _EMAIL_OWN)
    for field_name, _ in fields:
        if field_name.lower().startswith("content-"):
            raise _invalid(field_name, "Content-* fields belong on body parts")
    values = record.get("bodyValues") or {}
    if not isinstance(values, dict):
        raise _invalid("bodyValues", "an object of EmailBodyValues is expected")
    values = {**values, "\0empty": {"value": ""}}
    budget = _Budget(size_limit)
    root = await _BodyBuilder(values, blobs, budget).part(_structure(record), 1,
                                                          "bodyStructure")  # fmt: skip
    names = {field_name.lower() for field_name, _ in fields}
    if "date" not in names:
        fields.append(("Date", email.utils.format_datetime(now)))
    if "message-id" not in names:
        fields.append(("Message-ID", email.utils.make_msgid(domain=hostname)))
    head = "".join(f"{name}: {value}\r\n" for name, value in fields) + "MIME-Version: 1.0\r\n"
    data = re.sub(rb"\r?\n", b"\r\n", head.encode("ascii") + root.as_bytes(policy=_POLICY))
    budget.take(len(data) - budget.used)
    return data
