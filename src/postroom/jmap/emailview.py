"""A raw RFC 5322 message as JMAP Email properties (RFC 8621 §4.1), and the validation of
Email/get's `properties` and `bodyProperties` arguments (§4.2).

Owns `email_properties`: the header (§4.1.2, §4.1.3) and body (§4.1.4) properties asked
for, computed from the message's octets; `validate_properties` /
`validate_body_properties`: the argument lists checked, defaults applied.

Invariants: only the properties asked for are computed (a request for `subject` parses
no MIME structure); the metadata properties (METADATA_PROPERTIES: id, blobId, threadId,
mailboxIds, keywords, size, receivedAt) come from the store, never from here, and are
left out of the result; nothing raises for any message bytes; the only error is
InvalidArguments, from validation (a property name outside the RFC's). Sans-IO.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from typing import Any

from postroom.jmap.emailbody import (
    BODY_PART_PROPERTIES,
    DEFAULT_BODY_PROPERTIES,
    BodyLists,
    BodyNode,
    PartBlobId,
    body_values,
    build_body_tree,
    has_attachment,
    parse_structure,
    render_body_part,
    text_leaves,
)
from postroom.jmap.emailheaders import (
    CONVENIENCE_HEADERS,
    HeaderBlock,
    InvalidArguments,
    header_properties,
    is_header_property_name,
)
from postroom.mail.headers import find_body_start
from postroom.mail.mimetree import MessageMeta, parse_message
from postroom.mail.preview import message_preview

# RFC 8621 §4.1.1: what the store knows about a message, not its octets.
METADATA_PROPERTIES = frozenset({
    "id", "blobId", "threadId", "mailboxIds", "keywords", "size", "receivedAt",
})  # fmt: skip
HEADER_PROPERTIES = frozenset({"headers", *CONVENIENCE_HEADERS})  # §4.1.2, §4.1.3
BODY_PROPERTIES = frozenset({  # §4.1.4
    "bodyStructure", "bodyValues", "textBody", "htmlBody", "attachments", "hasAttachment",
    "preview",
})  # fmt: skip
# RFC 8621 §4.2: Email/get's properties when the client gives none.
DEFAULT_PROPERTIES = (
    "id", "blobId", "threadId", "mailboxIds", "keywords", "size", "receivedAt",
    "messageId", "inReplyTo", "references", "sender", "from", "to", "cc", "bcc", "replyTo",
    "subject", "sentAt", "hasAttachment", "preview", "bodyValues", "textBody", "htmlBody",
    "attachments",
)  # fmt: skip
_LIST_PROPERTIES = {"textBody": "text_body", "htmlBody": "html_body",
                    "attachments": "attachments"}  # fmt: skip


def validate_properties(names: Iterable[str] | None) -> tuple[str, ...]:
    """Email/get `properties`: DEFAULT_PROPERTIES for None, else the names in order
    without repeats; raises InvalidArguments naming the first unknown one."""
    if names is None:
        return DEFAULT_PROPERTIES
    return _validated(names, _is_email_property, "Email")


def validate_body_properties(names: Iterable[str] | None) -> tuple[str, ...]:
    """Email/get `bodyProperties`: DEFAULT_BODY_PROPERTIES for None, else checked."""
    if names is None:
        return DEFAULT_BODY_PROPERTIES
    return _validated(names, _is_body_part_property, "EmailBodyPart")


def _validated(names: Iterable[str], is_known: Callable[[str], bool], kind: str) -> tuple[str, ...]:
    checked: list[str] = []
    for name in names:
        if not isinstance(name, str) or not is_known(name):
            raise InvalidArguments(f"unknown {kind} property {str(name)[:100]!r}")
        checked.append(name)
    return tuple(dict.fromkeys(checked))


def _is_email_property(name: str) -> bool:
    return (name in METADATA_PROPERTIES or name in HEADER_PROPERTIES
            or name in BODY_PROPERTIES or is_header_property_name(name))  # fmt: skip


def _is_body_part_property(name: str) -> bool:
    return name in BODY_PART_PROPERTIES or is_header_property_name(name)


def email_properties(
    raw: bytes,
    *,
    properties: Collection[str],
    body_properties: Collection[str] = DEFAULT_BODY_PROPERTIES,
    fetch_text: bool = False,
    fetch_html: bool = False,
    fetch_all: bool = False,
    max_body_value_bytes: int = 0,
    part_blob_id: PartBlobId,
    meta: MessageMeta | None = None,
) -> dict[str, Any]:
    """The non-metadata properties among `properties` (validated names) of the message
    `raw`. `body_properties` (validated, in order) shape every EmailBodyPart;
    `fetch_*` and `max_body_value_bytes` are §4.2's fetchTextBodyValues,
    fetchHTMLBodyValues, fetchAllBodyValues and maxBodyValueBytes (0: no limit);
    `part_blob_id(partId)` names a part's blob; `meta` is the stored MIME tree of `raw`
    when the caller has it (parsed here otherwise, and only when a body property needs
    it)."""
    wanted = [name for name in properties if name not in METADATA_PROPERTIES]
    result: dict[str, Any] = {}
    if any(name in HEADER_PROPERTIES or name.startswith("header:") for name in wanted):
        end = meta.root.body_start if meta is not None else find_body_start(raw)
        result.update(header_properties(HeaderBlock(raw[:end]), wanted))
    if any(name in BODY_PROPERTIES for name in wanted):
        meta = meta if meta is not None else parse_message(raw)
        body = _BodyView(raw, meta, tuple(body_properties), part_blob_id)
        for name in wanted:
            if name in BODY_PROPERTIES:
                result[name] = body.property(name, fetch_text, fetch_html, fetch_all,
                                             max_body_value_bytes)  # fmt: skip
    return {name: result[name] for name in wanted if name in result}


class _BodyView:
    """One message's body properties, the tree and lists computed once, on demand."""

    def __init__(self, raw: bytes, meta: MessageMeta, body_properties: tuple[str, ...],
                 part_blob_id: PartBlobId) -> None:  # fmt: skip
        self._raw = raw
        self._meta = meta
        self._body_properties = body_properties
        self._part_blob_id = part_blob_id
        self._tree: BodyNode | None = None
        self._lists: BodyLists | None = None

    @property
    def tree(self) -> BodyNode:
        if self._tree is None:
            self._tree = build_body_tree(self._meta)
        return self._tree

    @property
    def lists(self) -> BodyLists:
        if self._lists is None:
            self._lists = parse_structure(self.tree)
        return self._lists

    def property(self, name: str, fetch_text: bool, fetch_html: bool, fetch_all: bool,
                 max_bytes: int) -> Any:  # fmt: skip
        if name == "preview":
            return message_preview(self._raw, self._meta)
        if name == "hasAttachment":
            return has_attachment(self.lists.attachments)
        if name == "bodyStructure":
            return self._render(self.tree, with_sub_parts=True)
        if name == "bodyValues":
            return body_values(self._raw, self._value_parts(fetch_text, fetch_html, fetch_all),
                               max_bytes)  # fmt: skip
        parts: list[BodyNode] = getattr(self.lists, _LIST_PROPERTIES[name])
        return [self._render(node, with_sub_parts=False) for node in parts]

    def _render(self, node: BodyNode, *, with_sub_parts: bool) -> dict[str, Any]:
        return render_body_part(self._raw, node, self._body_properties, self._part_blob_id,
                                with_sub_parts=with_sub_parts)  # fmt: skip

    def _value_parts(self, fetch_text: bool, fetch_html: bool,
                     fetch_all: bool) -> list[BodyNode]:  # fmt: skip
        """§4.2: the parts whose values bodyValues holds, in bodyStructure order when all
        are asked, else textBody's then htmlBody's."""
        if fetch_all:
            return list(text_leaves(self.tree))
        nodes: list[BodyNode] = []
        if fetch_text:
            nodes += self.lists.text_body
        if fetch_html:
            nodes += self.lists.html_body
        return nodes
