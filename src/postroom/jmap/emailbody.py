"""JMAP Email body properties (RFC 8621 §4.1.4): EmailBodyPart trees, the textBody /
htmlBody / attachments lists, hasAttachment, bodyValues, and a part's decoded content.

Owns:
- `build_body_tree`: mail/mimetree.py's `Part` tree seen as EmailBodyParts. partIds are
  IMAP part numbers ("1", "2.1"…; a single-part message's body is "1"), so a partId is
  also the BODY[…] section of the same octets; multipart parts have none. An attached
  message (message/rfc822) is a leaf: JMAP never lists the parts inside it.
- `parse_structure`: exactly the §4.1.4 algorithm for textBody / htmlBody / attachments;
- `render_body_part`, `body_value`, `has_attachment`, `part_content`.

Invariants: nothing here raises for any stored message; the tree is mimetree's, so it
has at most MAX_PARTS parts and MAX_DEPTH levels (the walks recurse no deeper); a body
value decodes at most about 24 × its byte limit of the part (BODY_VALUE_CEILING when the
client sets none), and is valid UTF-8 cut on a character boundary. Sans-IO.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from postroom.jmap.emailheaders import HeaderBlock, header_properties, known_codec
from postroom.mail.headers import decode_words
from postroom.mail.mimetree import MessageMeta, Part
from postroom.mail.sections import UnknownTransferEncoding, decode_transfer

# UTF-8 octets of one body value when the client asks for no limit (maxBodyValueBytes 0):
# the JSON answer stays bounded whatever the message; past it the value is truncated.
BODY_VALUE_CEILING = 16 * 1024 * 1024
# Decoded octets read per wanted UTF-8 octet: 4 per character for any charset that uses
# at most 4 octets per character, twice for CRLF turning into LF.
_DECODED_PER_OCTET = 8
# Encoded octets per decoded octet: quoted-printable's =XX is the worst.
_ENCODED_PER_DECODED = 3
_IDENTITY_ENCODINGS = frozenset({"7bit", "8bit", "binary"})
_INLINE_MEDIA = ("image/", "audio/", "video/")

PartBlobId = Callable[[str], str]

# RFC 8621 §4.1.4 EmailBodyPart properties, and §4.2's default bodyProperties.
BODY_PART_PROPERTIES = frozenset({
    "partId", "blobId", "size", "headers", "name", "type", "charset", "disposition", "cid",
    "language", "location", "subParts",
})  # fmt: skip
DEFAULT_BODY_PROPERTIES = (
    "partId", "blobId", "size", "name", "type", "charset", "disposition", "cid", "language",
    "location",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class BodyNode:
    """One EmailBodyPart: the MIME part and the facts the §4.1.4 algorithm reads."""

    part_id: str | None  # None for multipart/*
    part: Part
    type: str  # "text/plain": lower case, no parameters
    name: str | None
    disposition: str | None  # lower case
    cid: str | None
    in_related: bool  # a direct child of multipart/related
    sub_parts: tuple[BodyNode, ...] = ()

    @property
    def is_multipart(self) -> bool:
        return self.part.is_multipart


@dataclass(frozen=True, slots=True)
class BodyLists:
    """§4.1.4 textBody, htmlBody and attachments, in that order of definition."""

    text_body: list[BodyNode]
    html_body: list[BodyNode]
    attachments: list[BodyNode]


@dataclass(frozen=True, slots=True)
class BodyValue:
    """RFC 8621 §4.1.4 EmailBodyValue."""

    value: str
    is_encoding_problem: bool = False
    is_truncated: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "isEncodingProblem": self.is_encoding_problem,
                "isTruncated": self.is_truncated}  # fmt: skip


# -- the tree -----------------------------------------------------------------------------


def build_body_tree(meta: MessageMeta) -> BodyNode:
    """The bodyStructure tree of a message (its root is the message itself)."""
    return _build(meta.root, "", in_related=False)


def _build(part: Part, path: str, in_related: bool) -> BodyNode:
    children: tuple[BodyNode, ...] = ()
    if part.is_multipart:
        prefix = f"{path}." if path else ""
        is_related = part.subtype == "related"
        children = tuple(_build(child, f"{prefix}{number}", is_related)
                         for number, child in enumerate(part.children, 1))  # fmt: skip
    return BodyNode(
        part_id=None if part.is_multipart else (path or "1"),
        part=part,
        type=f"{part.type}/{part.subtype}",
        name=_part_name(part),
        disposition=(part.disposition or "").lower() or None,
        cid=_content_id(part.id),
        in_related=in_related,
        sub_parts=children,
    )


def _part_name(part: Part) -> str | None:
    """§4.1.4 name: Content-Disposition's filename (RFC 2231, decoded by mimetree), else
    Content-Type's name; RFC 2047 words inside either decoded too, as mailers use them."""
    name = part.disposition_params.get("filename") or part.params.get("name")
    if not name:
        return None
    return decode_words(name).strip() or None


def _content_id(value: str | None) -> str | None:
    """§4.1.4 cid: Content-Id without CFWS and its angle brackets."""
    if not value:
        return None
    text = "".join(value.split())
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    return text or None


def iter_leaves(node: BodyNode) -> Iterator[BodyNode]:
    """Every part with a partId, depth first (the order of bodyStructure)."""
    if not node.is_multipart:
        yield node
        return
    for child in node.sub_parts:
        yield from iter_leaves(child)


def find_body_node(root: BodyNode, part_id: str) -> BodyNode | None:
    """The part whose partId is `part_id`, or None."""
    return next((leaf for leaf in iter_leaves(root) if leaf.part_id == part_id), None)


# -- textBody, htmlBody, attachments ----------------------------------------------------


def parse_structure(root: BodyNode) -> BodyLists:
    """RFC 8621 §4.1.4: the message's structure read as textBody, htmlBody and
    attachments (the RFC's parseStructure, called on [bodyStructure] as "mixed")."""
    lists = BodyLists([], [], [])
    _parse_parts([root], "mixed", False, lists.html_body, lists.text_body, lists.attachments)
    return lists


def _parse_parts(
    parts: Sequence[BodyNode],
    multipart_type: str,
    in_alternative: bool,
    html_body: list[BodyNode] | None,
    text_body: list[BodyNode] | None,
    attachments: list[BodyNode],
) -> None:
    text_length = -1 if text_body is None else len(text_body)
    html_length = -1 if html_body is None else len(html_body)
    for index, node in enumerate(parts):
        if node.is_multipart:
            subtype = node.part.subtype
            is_alternative = in_alternative or subtype == "alternative"
            _parse_parts(node.sub_parts, subtype, is_alternative, html_body, text_body,
                         attachments)  # fmt: skip
        elif not _is_inline(node, index, multipart_type):
            attachments.append(node)
        elif multipart_type == "alternative":
            _add_alternative(node, html_body, text_body, attachments)
        else:
            if in_alternative and node.type == "text/plain":
                html_body = None  # this branch of an alternative is the plain one
            if in_alternative and node.type == "text/html":
                text_body = None
            for body in (text_body, html_body):
                if body is not None:
                    body.append(node)
            if (text_body is None or html_body is None) and _is_inline_media(node.type):
                attachments.append(node)
    if multipart_type == "alternative" and text_body is not None and html_body is not None:
        _fill_missing_alternative(text_body, text_length, html_body, html_length)


def _is_inline(node: BodyNode, index: int, multipart_type: str) -> bool:
    """A body part rather than an attachment: not `attachment`, a type shown inline,
    and the first part, or (outside multipart/related) media or a text without name."""
    if node.disposition == "attachment":
        return False
    if node.type not in ("text/plain", "text/html") and not _is_inline_media(node.type):
        return False
    return index == 0 or (
        multipart_type != "related" and (_is_inline_media(node.type) or not node.name))


def _is_inline_media(media_type: str) -> bool:
    return media_type.startswith(_INLINE_MEDIA)


def _add_alternative(node: BodyNode, html_body: list[BodyNode] | None,
                     text_body: list[BodyNode] | None, attachments: list[BodyNode]) -> None:
    """A leaf directly inside multipart/alternative goes to the list of its kind. (A list
    an enclosing branch dropped stays dropped; the RFC's code would fail there.)"""
    if node.type == "text/plain":
        if text_body is not None:
            text_body.append(node)
    elif node.type == "text/html":
        if html_body is not None:
            html_body.append(node)
    else:
        attachments.append(node)


def _fill_missing_alternative(text_body: list[BodyNode], text_length: int,
                              html_body: list[BodyNode], html_length: int) -> None:
    """An alternative that gave only HTML shows it as text too, and the other way."""
    if text_length == len(text_body) and html_length != len(html_body):
        text_body.extend(html_body[html_length:])
    if html_length == len(html_body) and text_length != len(text_body):
        html_body.extend(text_body[text_length:])


def has_attachment(attachments: Iterable[BodyNode]) -> bool:
    """§4.1.4 hasAttachment: an attachment counts unless it is an inline image (or audio,
    video) shown in the body: marked `inline`, or referenced by Content-ID from inside a
    multipart/related (the MAY). An inline PDF still counts: a user wants to see it."""
    return any(not _is_embedded_media(node) for node in attachments)


def _is_embedded_media(node: BodyNode) -> bool:
    if not _is_inline_media(node.type):
        return False
    return node.disposition == "inline" or (node.in_related and node.cid is not None)


# -- rendering ----------------------------------------------------------------------------


def render_body_part(raw: bytes, node: BodyNode, properties: Sequence[str],
                     part_blob_id: PartBlobId, *, with_sub_parts: bool = False) -> dict[str, Any]:
    """One EmailBodyPart with the `properties` asked (validated names). `with_sub_parts`
    (bodyStructure) adds subParts to multipart parts even when not asked: without it the
    tree below the root would be lost."""
    result: dict[str, Any] = {}
    wanted = list(properties)
    if with_sub_parts and node.is_multipart and "subParts" not in wanted:
        wanted.append("subParts")
    header_names = [name for name in wanted if name == "headers" or name.startswith("header:")]
    if header_names:
        block = HeaderBlock(raw[node.part.header_start : node.part.body_start])
        result.update(header_properties(block, header_names))
    for name in wanted:
        if name == "subParts":
            result[name] = [render_body_part(raw, child, properties, part_blob_id,
                                             with_sub_parts=with_sub_parts)
                            for child in node.sub_parts] if node.is_multipart else None  # fmt: skip
        elif name in _FACTS:
            result[name] = _FACTS[name](raw, node, part_blob_id)
    return {name: result[name] for name in wanted if name in result}


def _blob_id(raw: bytes, node: BodyNode, part_blob_id: PartBlobId) -> str | None:
    return None if node.part_id is None else part_blob_id(node.part_id)


def _size(raw: bytes, node: BodyNode, part_blob_id: PartBlobId) -> int:
    """§4.1.4 size: octets after transfer decoding (what a download of blobId gives)."""
    part = node.part
    if node.is_multipart or part.encoding in _IDENTITY_ENCODINGS:
        return part.size
    return len(decode_part(raw, part)[0])


def _charset(node: BodyNode) -> str | None:
    """§4.1.4 charset: the parameter; for text/* without one, us-ascii (RFC 2046)."""
    charset = node.part.params.get("charset")
    if node.part.type == "text":
        return charset or "us-ascii"
    return charset or None


_FACTS: dict[str, Callable[[bytes, BodyNode, PartBlobId], Any]] = {
    "partId": lambda raw, node, ids: node.part_id,
    "blobId": _blob_id,
    "size": _size,
    "name": lambda raw, node, ids: node.name,
    "type": lambda raw, node, ids: node.type,
    "charset": lambda raw, node, ids: _charset(node),
    "disposition": lambda raw, node, ids: node.disposition,
    "cid": lambda raw, node, ids: node.cid,
    "language": lambda raw, node, ids: list(node.part.language) or None,
    "location": lambda raw, node, ids: node.part.location,
}


# -- content and body values --------------------------------------------------------------


def decode_part(raw: bytes, part: Part, limit: int | None = None) -> tuple[bytes, bool]:
    """(the part's content without its transfer encoding, whether the encoding was
    known). An unknown encoding gives the octets as they are (§4.1.4 blobId). `limit`
    reads only that many encoded octets."""
    end = part.end if limit is None else min(part.end, part.body_start + limit)
    body = raw[part.body_start : end]
    try:
        return decode_transfer(body, part.encoding), True
    except UnknownTransferEncoding:
        return body, False


def part_content(raw: bytes, meta: MessageMeta, part_id: str) -> bytes | None:
    """What a download of a part's blobId serves: its decoded octets; None when the
    message has no part `part_id`."""
    node = find_body_node(build_body_tree(meta), part_id)
    return None if node is None else decode_part(raw, node.part)[0]


def body_value(raw: bytes, node: BodyNode, max_bytes: int = 0) -> BodyValue:
    """§4.1.4 EmailBodyValue of a text part: transfer and charset decoding, CRLF → LF,
    at most `max_bytes` UTF-8 octets (0: BODY_VALUE_CEILING), cut on a character
    boundary and, in HTML, before a tag the cut would split (§4.2)."""
    limit = BODY_VALUE_CEILING if max_bytes <= 0 else min(max_bytes, BODY_VALUE_CEILING)
    encoded_limit = limit * _DECODED_PER_OCTET * _ENCODED_PER_DECODED + 64
    payload, is_known_encoding = decode_part(raw, node.part, encoded_limit)
    is_whole = node.part.end - node.part.body_start <= encoded_limit
    text, is_problem = decode_text(payload, node.part.params.get("charset"), is_final=is_whole)
    text = text.replace("\r\n", "\n")
    value, is_cut = truncate_utf8(text, limit, is_html=node.type == "text/html")
    return BodyValue(value, is_problem or not is_known_encoding, is_cut or not is_whole)


def decode_text(payload: bytes, charset: str | None, *, is_final: bool = True) -> tuple[str, bool]:
    """(text, whether it had an encoding problem): an unknown charset, or octets the
    charset cannot decode (each replaced by U+FFFD). 8-bit octets labelled us-ascii (or
    unlabelled) are read as UTF-8. With is_final False a character cut at the end of
    `payload` is left out rather than replaced."""
    codec = known_codec(charset or "us-ascii")
    is_problem = codec is None
    if codec is None or codec == "ascii":
        codec = "utf-8"
    try:
        text = codecs.getincrementaldecoder(codec)("strict").decode(payload, final=is_final)
    except UnicodeDecodeError:
        text = codecs.getincrementaldecoder(codec)("replace").decode(payload, final=is_final)
        is_problem = True
    if not _is_valid_unicode(text):  # a UTF-7 or UTF-16 text can hold lone surrogates
        text = text.encode("utf-8", "replace").decode("utf-8")
        is_problem = True
    return text, is_problem


def _is_valid_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def truncate_utf8(text: str, max_bytes: int, *, is_html: bool = False) -> tuple[str, bool]:
    """(text cut to at most `max_bytes` UTF-8 octets on a character boundary, whether it
    was cut). HTML is cut before a tag the limit falls in (§4.2 maxBodyValueBytes)."""
    if len(text) * 4 <= max_bytes:
        return text, False
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text, False
    cut = encoded[:max_bytes].decode("utf-8", "ignore")  # drops only a split last character
    if is_html:
        opening = cut.rfind("<")
        if opening > cut.rfind(">"):
            cut = cut[:opening]
    return cut, True


def text_leaves(root: BodyNode) -> Iterator[BodyNode]:
    """The text/* parts of bodyStructure, depth first (fetchAllBodyValues)."""
    return (leaf for leaf in iter_leaves(root) if leaf.part.type == "text")


def body_values(raw: bytes, nodes: Iterable[BodyNode], max_bytes: int) -> dict[str, Any]:
    """§4.2 bodyValues: partId → EmailBodyValue for the text/* parts among `nodes`."""
    values: dict[str, Any] = {}
    for node in nodes:
        if node.part_id is not None and node.part.type == "text" and node.part_id not in values:
            values[node.part_id] = body_value(raw, node, max_bytes).to_json()
    return values
