"""The offset-recording MIME tree of a raw message, and its compact JSON form.

Owns `Part` (one MIME entity: where its header, body and end lie in the raw bytes, plus
the header facts BODYSTRUCTURE needs) and `MessageMeta` (root part + ENVELOPE), which
delivery and APPEND compute once per message (`message_meta`) and the store keeps, so
FETCH never re-parses.

Invariants:
- any bytes input parses without exception; for every part
  0 <= header_start <= body_start <= end <= len(raw), children lie inside their parent;
- nesting deeper than MAX_DEPTH or more than MAX_PARTS parts: the rest becomes an opaque
  application/octet-stream leaf (no recursion error, bounded work);
- a multipart part always has at least one child; message/rfc822 (and message/global)
  parts always have exactly one child, the embedded message (parts that cannot, being
  too deep, too many or transfer-encoded, are typed application/octet-stream instead).
Sans-IO: standard library only (`email.message` is used for parameter parsing only).
"""

from __future__ import annotations

import email.message
import email.utils
import json
from dataclasses import dataclass, field
from typing import Any

from postroom.mail.envelope import Envelope, render_envelope
from postroom.mail.headers import find_body_start, parse_header_fields, unfold

MAX_DEPTH = 32
MAX_PARTS = 5000
# RFC 2046 §5.1.1: a boundary is 1-70 characters; we accept a little more, as others do.
_MAX_BOUNDARY = 200
EMBEDDED_MESSAGE_TYPES = frozenset({("message", "rfc822"), ("message", "global")})
_IDENTITY_ENCODINGS = frozenset({"7bit", "8bit", "binary"})
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz")
_JSON_VERSION = 1
# The stdlib parameter parser is quadratic in the number of parameters; no real
# Content-Type/-Disposition comes near this, so longer values are cut before parsing.
_MAX_PARAMS_TEXT = 16_384


@dataclass(frozen=True, slots=True)
class Part:
    """One MIME entity. Offsets index the raw message bytes; `lines` is set for text/*
    and embedded messages; `envelope` only for message/rfc822 parts with a child."""

    header_start: int
    body_start: int
    end: int
    type: str = "text"
    subtype: str = "plain"
    params: dict[str, str] = field(default_factory=dict)
    id: str | None = None
    description: str | None = None
    encoding: str = "7bit"
    disposition: str | None = None
    disposition_params: dict[str, str] = field(default_factory=dict)
    language: tuple[str, ...] = ()
    location: str | None = None
    md5: str | None = None
    lines: int | None = None
    children: tuple[Part, ...] = ()
    envelope: Envelope | None = None

    @property
    def size(self) -> int:
        """Body size in octets, as stored (RFC 9051 §7.5.2 body-fld-octets)."""
        return self.end - self.body_start

    @property
    def is_multipart(self) -> bool:
        return self.type == "multipart"

    @property
    def is_embedded_message(self) -> bool:
        return (self.type, self.subtype) in EMBEDDED_MESSAGE_TYPES and bool(self.children)


@dataclass(frozen=True, slots=True)
class MessageMeta:
    """The parsed facts about one stored message."""

    root: Part
    envelope: Envelope

    def to_json(self) -> str:
        document = {
            "v": _JSON_VERSION,
            "e": _envelope_to_json(self.envelope),
            "p": _part_to_list(self.root),
        }
        return json.dumps(document, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> MessageMeta:
        document = json.loads(text)
        if document.get("v") != _JSON_VERSION:
            raise ValueError(f"unsupported message meta version {document.get('v')!r}")
        return cls(root=_part_from_list(document["p"]), envelope=_envelope_from_json(document["e"]))


def parse_message(raw: bytes) -> MessageMeta:
    """Parse a whole message; never raises for any bytes."""
    counter = _Counter()
    root = _parse_entity(raw, 0, len(raw), depth=0, default_digest=False, counter=counter)
    return MessageMeta(root=root, envelope=render_envelope(raw[: root.body_start]))


def message_meta(raw: bytes) -> str:
    """parse_message(raw).to_json(): what delivery and APPEND store per message."""
    return parse_message(raw).to_json()


@dataclass(slots=True)
class _Counter:
    parts: int = 0


@dataclass(frozen=True, slots=True)
class _HeaderFacts:
    """What one MIME header says, before the body is looked at."""

    type: str
    subtype: str
    params: dict[str, str]
    values: dict[str, str]  # first occurrence of each Content-* field, lower-cased names


def _parse_entity(
    raw: bytes, start: int, end: int, depth: int, default_digest: bool, counter: _Counter
) -> Part:
    """One entity (header + body) in raw[start:end], recursing into its content."""
    counter.parts += 1
    body_start = find_body_start(raw, start, end)
    facts = _read_header(raw[start:body_start], default_digest)
    kind = (facts.type, facts.subtype)
    is_opaque = depth >= MAX_DEPTH or counter.parts >= MAX_PARTS
    # RFC 2046 §5.2.1: message/rfc822 may not be encoded; if it is, its content is not a
    # message we can index, so it becomes opaque too (BODYSTRUCTURE's message form would
    # need an envelope we do not have).
    is_encoded_message = kind in EMBEDDED_MESSAGE_TYPES and (
        _encoding(facts) not in _IDENTITY_ENCODINGS
    )
    children: tuple[Part, ...] = ()
    envelope: Envelope | None = None
    if is_encoded_message or (
        is_opaque and (facts.type == "multipart" or kind in EMBEDDED_MESSAGE_TYPES)
    ):
        facts = _HeaderFacts("application", "octet-stream", facts.params, facts.values)
    elif facts.type == "multipart":
        children = _parse_multipart(raw, body_start, end, facts, depth, counter)
    elif kind in EMBEDDED_MESSAGE_TYPES:
        child = _parse_entity(raw, body_start, end, depth + 1, False, counter)
        children = (child,)
        envelope = render_envelope(raw[child.header_start : child.body_start])
    return _build_part(raw, start, body_start, end, facts, children, envelope)


def _build_part(
    raw: bytes,
    start: int,
    body_start: int,
    end: int,
    facts: _HeaderFacts,
    children: tuple[Part, ...],
    envelope: Envelope | None,
) -> Part:
    values = facts.values
    disposition, disposition_params = _parse_disposition(values.get("content-disposition"))
    has_lines = facts.type == "text" or envelope is not None
    return Part(
        header_start=start,
        body_start=body_start,
        end=end,
        type=facts.type,
        subtype=facts.subtype,
        params=facts.params,
        id=values.get("content-id") or None,
        description=values.get("content-description") or None,
        encoding=_encoding(facts),
        disposition=disposition,
        disposition_params=disposition_params,
        language=_parse_language(values.get("content-language")),
        location=_parse_location(values.get("content-location")),
        md5=values.get("content-md5") or None,
        lines=count_lines(raw, body_start, end) if has_lines else None,
        children=children,
        envelope=envelope,
    )


def count_lines(raw: bytes, start: int, end: int) -> int:
    """Text lines in raw[start:end]; an unterminated last line counts (RFC 9051 §7.5.2)."""
    if end <= start:
        return 0
    lines = raw.count(b"\n", start, end)
    return lines if raw[end - 1 : end] == b"\n" else lines + 1


def _encoding(facts: _HeaderFacts) -> str:
    # RFC 2045 §6.1: the default is 7bit; the mechanism is case-insensitive.
    value = facts.values.get("content-transfer-encoding", "").strip().lower()
    return value.split(None, 1)[0] if value else "7bit"


def _read_header(header: bytes, default_digest: bool) -> _HeaderFacts:
    values: dict[str, str] = {}
    for header_field in parse_header_fields(header):
        name = header_field.name.lower()
        if name.startswith("content-") and name not in values:
            values[name] = unfold(header_field.value)
    content_type = values.get("content-type")
    parsed = _parse_content_type(content_type) if content_type else None
    if parsed is not None:
        return _HeaderFacts(parsed[0], parsed[1], parsed[2], values)
    if default_digest:  # RFC 2046 §5.1.5: parts of a digest default to message/rfc822
        return _HeaderFacts("message", "rfc822", {}, values)
    # RFC 2045 §5.2: missing or invalid Content-Type means text/plain; charset=us-ascii.
    return _HeaderFacts("text", "plain", {"charset": "us-ascii"}, values)


def _parse_content_type(value: str) -> tuple[str, str, dict[str, str]] | None:
    full_type = value.split(";", 1)[0].strip().lower()
    main, slash, sub = full_type.partition("/")
    main, sub = main.strip(), sub.strip()
    if not slash or not _is_token(main) or not _is_token(sub):
        return None
    params = _parse_params("content-type", value)
    if main == "text" and "charset" not in params:
        params["charset"] = "us-ascii"  # RFC 2046 §4.1.2 default, made explicit as Dovecot does
    return main, sub, params


def _is_token(text: str) -> bool:
    return bool(text) and all(char in _TOKEN_CHARS for char in text)


def _parse_params(header_name: str, value: str) -> dict[str, str]:
    """Parameters of a Content-Type/-Disposition value, names lower-cased, RFC 2231
    continuations joined and charset-decoded (via the stdlib, which never raises here)."""
    message = email.message.Message()
    message[header_name] = value[:_MAX_PARAMS_TEXT]
    params: dict[str, str] = {}
    try:
        pairs = message.get_params(header=header_name) or []
    except (ValueError, LookupError, IndexError):
        return params
    for name, raw_value in pairs[1:]:  # the first pair is the type itself
        key = name.strip().lower()
        if key and key not in params:
            text = email.utils.collapse_rfc2231_value(raw_value)
            params[key] = text.encode("utf-8", "replace").decode("utf-8")
    return params


def _parse_disposition(value: str | None) -> tuple[str | None, dict[str, str]]:
    if not value:
        return None, {}
    kind = value.split(";", 1)[0].strip()
    if not kind:
        return None, {}
    return kind, _parse_params("content-disposition", value)


def _parse_language(value: str | None) -> tuple[str, ...]:
    # RFC 3282: a comma-separated list of language tags.
    if not value:
        return ()
    return tuple(tag for tag in (item.strip() for item in value.split(",")) if tag)


def _parse_location(value: str | None) -> str | None:
    # RFC 2557 §4.4.1: folding whitespace inside a URI is not part of it.
    if not value:
        return None
    return "".join(value.split()) or None


def _parse_multipart(
    raw: bytes, body_start: int, end: int, facts: _HeaderFacts, depth: int, counter: _Counter
) -> tuple[Part, ...]:
    boundary = facts.params.get("boundary", "").encode("utf-8", "replace")
    ranges = split_multipart(raw, body_start, end, boundary) if boundary else []
    if not ranges:
        # No usable boundary: the whole body is one part with default headers, so the
        # tree stays a valid BODYSTRUCTURE and the content is still fetchable.
        lines = count_lines(raw, body_start, end)
        params = {"charset": "us-ascii"}
        return (Part(body_start, body_start, end, params=params, lines=lines),)
    is_digest = facts.subtype == "digest"
    children: list[Part] = []
    for part_start, part_end in ranges:
        if counter.parts + 1 >= MAX_PARTS:
            # Bound the work: everything left becomes one opaque leaf, the last part allowed.
            rest_end = ranges[-1][1]
            children.append(_opaque_leaf(raw, part_start, rest_end, counter))
            break
        child = _parse_entity(raw, part_start, part_end, depth + 1, is_digest, counter)
        children.append(child)
    return tuple(children)


def _opaque_leaf(raw: bytes, start: int, end: int, counter: _Counter) -> Part:
    counter.parts += 1
    body_start = find_body_start(raw, start, end)
    return Part(start, body_start, end, type="application", subtype="octet-stream")


def split_multipart(raw: bytes, start: int, end: int, boundary: bytes) -> list[tuple[int, int]]:
    """(start, end) of each body part between delimiter lines in raw[start:end].

    RFC 2046 §5.1.1: a delimiter is "--boundary" at the start of a line, optionally
    followed by "--" (close), then transport padding (LWSP) before the line end. The line
    break before a delimiter belongs to it. Preamble and epilogue are ignored; a missing
    close delimiter ends the last part at `end`.
    """
    if len(boundary) > _MAX_BOUNDARY:
        return []
    marker = b"--" + boundary
    ranges: list[tuple[int, int]] = []
    part_start: int | None = None
    pos = start
    while pos < end:
        found = raw.find(marker, pos, end)
        if found < 0:
            break
        line_end, is_close = _delimiter_line(raw, found, len(marker), start, end)
        if line_end < 0:
            pos = found + 1
            continue
        if part_start is not None:
            ranges.append((part_start, _strip_line_break(raw, part_start, found)))
        if is_close:
            return ranges
        part_start = line_end
        pos = line_end
    if part_start is not None:
        ranges.append((part_start, end))
    return ranges


def _delimiter_line(
    raw: bytes, found: int, marker_length: int, start: int, end: int
) -> tuple[int, bool]:
    """(offset after the delimiter line, is close delimiter), or (-1, False) if the
    marker at `found` is not a delimiter line."""
    if found != start and raw[found - 1 : found] != b"\n":
        return -1, False
    after = found + marker_length
    is_close = raw.startswith(b"--", after) and after + 2 <= end
    if is_close:
        after += 2
    newline = raw.find(b"\n", after, end)
    line_end = end if newline < 0 else newline + 1
    if raw[after:line_end].strip(b" \t\r\n"):
        return -1, False
    return line_end, is_close


def _strip_line_break(raw: bytes, part_start: int, delimiter: int) -> int:
    if delimiter - 2 >= part_start and raw[delimiter - 2 : delimiter] == b"\r\n":
        return delimiter - 2
    if delimiter - 1 >= part_start and raw[delimiter - 1 : delimiter] == b"\n":
        return delimiter - 1
    return delimiter


# Compact JSON: each part is a positional list, trailing defaults omitted.
_FIELDS = (
    "header_start", "body_start", "end", "type", "subtype", "params", "id", "description",
    "encoding", "disposition", "disposition_params", "language", "location", "md5",
    "lines", "children", "envelope",
)  # fmt: skip
_DEFAULTS: tuple[Any, ...] = (
    None, None, None, "text", "plain", {}, None, None, "7bit", None, {}, [], None, None,
    None, [], None,
)  # fmt: skip


def _envelope_to_json(envelope: Envelope | None) -> Envelope | None:
    # Sender and Reply-To usually repeat From (RFC 9051 §7.5.2 defaults); store them as
    # null then. render_envelope never yields a null sender next to a non-null From, so
    # this is exactly reversible.
    if envelope is None or len(envelope) != 10:
        return envelope
    compact = list(envelope)
    for index in (3, 4):
        if compact[index] == compact[2]:
            compact[index] = None
    return compact


def _envelope_from_json(envelope: Any) -> Any:  # JSON data, shape checked by use
    if envelope is None or len(envelope) != 10:
        return envelope
    full = list(envelope)
    for index in (3, 4):
        if full[index] is None:
            full[index] = full[2]
    return full


def _part_to_list(part: Part) -> list[Any]:
    values: list[Any] = [
        part.header_start, part.body_start, part.end, part.type, part.subtype, part.params,
        part.id, part.description, part.encoding, part.disposition, part.disposition_params,
        list(part.language), part.location, part.md5, part.lines,
        [_part_to_list(child) for child in part.children], _envelope_to_json(part.envelope),
    ]  # fmt: skip
    while len(values) > 3 and values[-1] == _DEFAULTS[len(values) - 1]:
        values.pop()
    return values


def _part_from_list(values: list[Any]) -> Part:
    full = list(values) + list(_DEFAULTS[len(values) :])
    kwargs = dict(zip(_FIELDS, full, strict=True))
    kwargs["params"] = dict(kwargs["params"])
    kwargs["disposition_params"] = dict(kwargs["disposition_params"])
    kwargs["language"] = tuple(kwargs["language"])
    kwargs["children"] = tuple(_part_from_list(child) for child in kwargs["children"])
    kwargs["envelope"] = _envelope_from_json(kwargs["envelope"])
    return Part(**kwargs)
