"""RFC 8621 §4.1.4: EmailBodyPart trees, textBody/htmlBody/attachments, body values."""

from __future__ import annotations

import base64
import itertools
import time
from email.message import EmailMessage
from email.policy import SMTP

from hypothesis import given, settings
from hypothesis import strategies as st

from postroom.jmap.emailbody import (
    DEFAULT_BODY_PROPERTIES,
    BodyNode,
    body_value,
    body_values,
    build_body_tree,
    find_body_node,
    has_attachment,
    iter_leaves,
    parse_structure,
    part_content,
    render_body_part,
    truncate_utf8,
)
from postroom.mail.mimetree import MAX_DEPTH, MAX_PARTS, parse_message

_BOUNDARIES = itertools.count()


def leaf(content_type: str, body: bytes = b"x", headers: bytes = b"") -> bytes:
    return b"Content-Type: " + content_type.encode() + b"\r\n" + headers + b"\r\n" + body


def multipart(subtype: str, *parts: bytes, headers: bytes = b"") -> bytes:
    boundary = f"b{next(_BOUNDARIES)}".encode()
    out = [b"Content-Type: multipart/" + subtype.encode() + b"; boundary=" + boundary
           + b"\r\n" + headers + b"\r\n"]
    for part in parts:
        out.append(b"--" + boundary + b"\r\n" + part + b"\r\n")
    out.append(b"--" + boundary + b"--\r\n")
    return b"".join(out)


def message(body_entity: bytes) -> bytes:
    return b"From: a@example.com\r\nSubject: test\r\nMIME-Version: 1.0\r\n" + body_entity


def tree_of(raw: bytes) -> BodyNode:
    return build_body_tree(parse_message(raw))


def ids(nodes: list[BodyNode]) -> list[str | None]:
    return [node.part_id for node in nodes]


def blob_ids(part_id: str) -> str:
    return f"G{part_id}"


INLINE = b"Content-Disposition: inline\r\n"

# RFC 8621 §4.1.4's example: a text+HTML message a list manager wrapped with a header
# and footer part, with attachments.
RFC_EXAMPLE = message(multipart(
    "mixed",
    leaf("text/plain", b"A", INLINE),
    multipart(
        "mixed",
        multipart(
            "alternative",
            multipart("mixed", leaf("text/plain", b"B", INLINE),
                      leaf("image/jpeg", b"C", INLINE), leaf("text/plain", b"D", INLINE)),
            multipart("related", leaf("text/html", b"E"), leaf("image/jpeg", b"F")),
        ),
        leaf("image/jpeg", b"G", b"Content-Disposition: attachment\r\n"),
        leaf("application/x-excel", b"H"),
        leaf("message/rfc822", b"Subject: J\r\n\r\nJ"),
    ),
    leaf("text/plain", b"K", INLINE),
))


def test_rfc_example_lists() -> None:
    lists = parse_structure(tree_of(RFC_EXAMPLE))
    names = {"1": "A", "2.1.1.1": "B", "2.1.1.2": "C", "2.1.1.3": "D", "2.1.2.1": "E",
             "2.1.2.2": "F", "2.2": "G", "2.3": "H", "2.4": "J", "3": "K"}
    assert [names[i] for i in ids(lists.text_body)] == ["A", "B", "C", "D", "K"]
    assert [names[i] for i in ids(lists.html_body)] == ["A", "E", "K"]
    assert [names[i] for i in ids(lists.attachments)] == ["C", "F", "G", "H", "J"]
    assert has_attachment(lists.attachments)


def test_rfc_example_structure_and_part_ids() -> None:
    root = tree_of(RFC_EXAMPLE)
    assert root.part_id is None and root.type == "multipart/mixed"
    assert [leaf.part_id for leaf in iter_leaves(root)] == [
        "1", "2.1.1.1", "2.1.1.2", "2.1.1.3", "2.1.2.1", "2.1.2.2", "2.2", "2.3", "2.4", "3"]
    rendered = render_body_part(RFC_EXAMPLE, root, ["partId", "type"], blob_ids,
                                with_sub_parts=True)
    inner = rendered["subParts"][1]
    assert inner["partId"] is None and inner["type"] == "multipart/mixed"
    attached = inner["subParts"][3]
    # An attached message is a leaf: no subParts, its blob is the message.
    assert attached == {"partId": "2.4", "type": "message/rfc822"}
    assert part_content(RFC_EXAMPLE, parse_message(RFC_EXAMPLE), "2.4") == b"Subject: J\r\n\r\nJ"


def test_single_part_message() -> None:
    raw = message(leaf("text/plain; charset=utf-8", "héllo\r\n".encode()))
    root = tree_of(raw)
    assert root.part_id == "1" and not root.sub_parts
    lists = parse_structure(root)
    assert ids(lists.text_body) == ids(lists.html_body) == ["1"]
    assert lists.attachments == [] and not has_attachment(lists.attachments)
    part = render_body_part(raw, root, [*DEFAULT_BODY_PROPERTIES, "subParts"], blob_ids)
    assert part == {"partId": "1", "blobId": "G1", "size": 8, "name": None,
                    "type": "text/plain", "charset": "utf-8", "disposition": None,
                    "cid": None, "language": None, "location": None, "subParts": None}


def test_no_content_type_defaults() -> None:
    raw = b"Subject: plain\r\n\r\nhello"
    part = render_body_part(raw, tree_of(raw), ["type", "charset"], blob_ids)
    assert part == {"type": "text/plain", "charset": "us-ascii"}


def test_alternative_text_and_html() -> None:
    raw = message(multipart("alternative", leaf("text/plain", b"plain"),
                            leaf("text/html", b"<b>html</b>")))
    lists = parse_structure(tree_of(raw))
    assert ids(lists.text_body) == ["1"] and ids(lists.html_body) == ["2"]
    assert lists.attachments == []


def test_alternative_with_only_html_shows_it_as_text() -> None:
    raw = message(multipart("mixed", multipart("alternative", leaf("text/html", b"<p>x")),
                            leaf("application/pdf", b"%PDF", b"Content-Disposition: "
                                 b"attachment; filename=a.pdf\r\n")))
    lists = parse_structure(tree_of(raw))
    assert ids(lists.text_body) == ["1.1"] and ids(lists.html_body) == ["1.1"]
    assert ids(lists.attachments) == ["2"]


def test_nested_alternatives() -> None:
    raw = message(multipart(
        "alternative",
        leaf("text/plain", b"outer plain"),
        multipart("alternative", leaf("text/plain", b"inner plain"),
                  leaf("text/html", b"<p>inner html")),
    ))
    lists = parse_structure(tree_of(raw))
    assert ids(lists.text_body) == ["1", "2.1"]
    assert ids(lists.html_body) == ["2.2"]


def test_related_with_inline_image_and_attachments() -> None:
    msg = EmailMessage()
    msg["From"] = "a@example.com"
    msg["Subject"] = "pictures"
    msg.set_content("See the picture.")
    msg.add_alternative('<p>See <img src="cid:pic1@example.com"></p>', subtype="html")
    html_part = msg.get_payload()[1]
    html_part.add_related(b"\x89PNG-data", maintype="image", subtype="png",
                          cid="<pic1@example.com>")
    msg.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf",
                       filename="Überblick.pdf")
    raw = msg.as_bytes(policy=SMTP)
    root = tree_of(raw)
    assert root.type == "multipart/mixed"
    lists = parse_structure(root)
    assert ids(lists.text_body) == ["1.1"]
    assert ids(lists.html_body) == ["1.2.1"]
    assert ids(lists.attachments) == ["1.2.2", "2"]
    image = find_body_node(root, "1.2.2")
    assert image is not None
    assert render_body_part(raw, image, ["type", "cid", "size", "blobId"], blob_ids) == {
        "type": "image/png", "cid": "pic1@example.com", "size": 9, "blobId": "G1.2.2"}
    pdf = find_body_node(root, "2")
    assert pdf is not None and pdf.name == "Überblick.pdf"  # RFC 2231 filename*
    assert pdf.disposition == "attachment"
    assert part_content(raw, parse_message(raw), "2") == b"%PDF-1.4"  # base64 removed
    assert has_attachment(lists.attachments)
    # The embedded image alone is no attachment a user looks for.
    assert not has_attachment([image])


def test_inline_media_in_mixed_goes_to_both_bodies() -> None:
    raw = message(multipart("mixed", leaf("text/plain", b"see:"),
                            leaf("image/gif", b"GIF89a", INLINE), leaf("text/plain", b"bye")))
    lists = parse_structure(tree_of(raw))
    assert ids(lists.text_body) == ids(lists.html_body) == ["1", "2", "3"]
    assert lists.attachments == []


def test_named_text_part_after_the_first_is_an_attachment() -> None:
    raw = message(multipart("mixed", leaf("text/plain", b"body"),
                            leaf("text/plain; name=notes.txt", b"notes")))
    lists = parse_structure(tree_of(raw))
    assert ids(lists.text_body) == ["1"] and ids(lists.attachments) == ["2"]
    assert lists.attachments[0].name == "notes.txt"


def test_part_facts() -> None:
    headers = (b"Content-Disposition: INLINE; filename=\"=?utf-8?q?r=C3=A9sum=C3=A9?=.txt\"\r\n"
               b"Content-ID: < id-1@example.com >\r\nContent-Language: en, de\r\n"
               b"Content-Location: http://example.com/\r\n a.txt\r\n")
    raw = message(multipart("mixed", leaf("text/plain", b"a"),
                            leaf("application/octet-stream; charset=utf-8", b"b", headers)))
    node = find_body_node(tree_of(raw), "2")
    assert node is not None
    part = render_body_part(raw, node, ["name", "disposition", "cid", "language", "location",
                                        "charset", "header:Content-ID", "headers"], blob_ids)
    assert part["name"] == "résumé.txt"  # RFC 2047 inside the parameter
    assert part["disposition"] == "inline"
    assert part["cid"] == "id-1@example.com"
    assert part["language"] == ["en", "de"]
    assert part["location"] == "http://example.com/a.txt"
    assert part["charset"] == "utf-8"
    assert part["header:Content-ID"] == " < id-1@example.com >"
    assert [one["name"] for one in part["headers"]] == [
        "Content-Type", "Content-Disposition", "Content-ID", "Content-Language",
        "Content-Location"]


# -- body values --------------------------------------------------------------------------


def only_part(raw: bytes) -> BodyNode:
    return next(iter_leaves(tree_of(raw)))


def test_quoted_printable_value() -> None:
    raw = message(leaf("text/plain; charset=utf-8", b"caf=C3=A9 soft=\r\nbreak\r\nline 2\r\n",
                       b"Content-Transfer-Encoding: quoted-printable\r\n"))
    value = body_value(raw, only_part(raw))
    assert value.to_json() == {"value": "café softbreak\nline 2\n", "isEncodingProblem": False,
                               "isTruncated": False}


def test_base64_latin1_value_and_size() -> None:
    body = base64.encodebytes("Grüße aus Köln\r\n".encode("latin-1"))
    raw = message(leaf("text/plain; charset=ISO-8859-1", body,
                       b"Content-Transfer-Encoding: base64\r\n"))
    node = only_part(raw)
    assert body_value(raw, node).value == "Grüße aus Köln\n"
    assert render_body_part(raw, node, ["size"], blob_ids) == {"size": 16}


def test_unknown_charset_is_an_encoding_problem() -> None:
    raw = message(leaf("text/plain; charset=x-no-such-charset", b"hello"))
    value = body_value(raw, only_part(raw))
    assert value.value == "hello" and value.is_encoding_problem


def test_undecodable_octets_are_replaced() -> None:
    raw = message(leaf("text/plain; charset=utf-8", b"ok \xff\xfe end"))
    value = body_value(raw, only_part(raw))
    assert value.value == "ok \ufffd\ufffd end" and value.is_encoding_problem


def test_eight_bit_us_ascii_reads_as_utf8() -> None:
    raw = message(leaf("text/plain", "naïve".encode()))
    value = body_value(raw, only_part(raw))
    assert value.value == "naïve" and not value.is_encoding_problem


def test_unknown_transfer_encoding_is_an_encoding_problem() -> None:
    raw = message(leaf("text/plain", b"begin 644 x", b"Content-Transfer-Encoding: x-uue\r\n"))
    node = only_part(raw)
    value = body_value(raw, node)
    assert value.value == "begin 644 x" and value.is_encoding_problem
    assert part_content(raw, parse_message(raw), "1") == b"begin 644 x"


def test_truncation_inside_a_multibyte_character() -> None:
    raw = message(leaf("text/plain; charset=utf-8", "ab€cd".encode()))  # € is 3 octets
    node = only_part(raw)
    for limit, expected in [(2, "ab"), (3, "ab"), (4, "ab"), (5, "ab€"), (6, "ab€c")]:
        value = body_value(raw, node, limit)
        assert (value.value, value.is_truncated) == (expected, True), limit
    assert body_value(raw, node, 7).to_json()["isTruncated"] is False
    assert body_value(raw, node, 0).value == "ab€cd"


def test_truncation_of_a_long_base64_part_reads_a_prefix() -> None:
    text = "é" * 200_000
    body = base64.encodebytes(text.encode("utf-16"))
    raw = message(leaf("text/plain; charset=utf-16", body,
                       b"Content-Transfer-Encoding: base64\r\n"))
    value = body_value(raw, only_part(raw), 11)
    assert value.value == "é" * 5 and value.is_truncated and not value.is_encoding_problem


def test_html_is_not_cut_inside_a_tag() -> None:
    assert truncate_utf8('<p>hi <a href="x">', 12, is_html=True) == ("<p>hi ", True)
    assert truncate_utf8('<p>hi <a href="x">', 12) == ('<p>hi <a hre', True)
    assert truncate_utf8("<p>hello</p>", 8, is_html=True) == ("<p>hello", True)


def test_body_values_only_for_text_parts() -> None:
    raw = message(multipart("mixed", leaf("text/plain", b"t"), leaf("image/gif", b"g", INLINE),
                            leaf("text/html", b"<i>h</i>")))
    lists = parse_structure(tree_of(raw))
    values = body_values(raw, lists.text_body, 0)
    assert list(values) == ["1", "3"]
    assert values["3"]["value"] == "<i>h</i>"


def test_part_content_of_a_missing_part() -> None:
    meta = parse_message(RFC_EXAMPLE)
    assert part_content(RFC_EXAMPLE, meta, "9") is None
    assert part_content(RFC_EXAMPLE, meta, "2") is None  # a multipart has no blob
    assert part_content(RFC_EXAMPLE, meta, "2.2") == b"G"


# -- bounds -------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_any_bytes_give_a_body(raw: bytes) -> None:
    root = tree_of(raw)
    lists = parse_structure(root)
    for node in iter_leaves(root):
        render_body_part(raw, node, [*DEFAULT_BODY_PROPERTIES, "headers"], blob_ids)
        body_value(raw, node, 7)
    has_attachment(lists.attachments)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from([
    b"--b\r\n", b"Content-Type: multipart/mixed; boundary=b\r\n", b"\r\n",
    b"Content-Type: text/plain; charset=utf-7\r\n", b"Content-Transfer-Encoding: base64\r\n",
    b"Content-Type: multipart/alternative; boundary=b\r\n", b"+AGE-\xff", b"=C3=\r\n",
    b"Content-Type: message/rfc822\r\n", b"--b--\r\n", b"text\r\n",
]), max_size=40))
def test_mime_shaped_bytes_give_a_body(chunks: list[bytes]) -> None:
    raw = b"".join(chunks)
    root = tree_of(raw)
    parse_structure(root)
    for node in iter_leaves(root):
        value = body_value(raw, node, 5)
        assert len(value.value.encode("utf-8")) <= 5


def test_ten_thousand_parts_are_bounded() -> None:
    raw = message(multipart("mixed", *(leaf("text/plain", b"%d" % n) for n in range(10_000))))
    started = time.monotonic()
    root = tree_of(raw)
    lists = parse_structure(root)
    leaves = list(iter_leaves(root))
    assert len(leaves) <= MAX_PARTS
    assert len(lists.text_body) + len(lists.attachments) == len(leaves)
    assert time.monotonic() - started < 10


def test_thousand_deep_nesting_is_bounded() -> None:
    entity = leaf("text/plain", b"deep")
    for _ in range(1000):
        entity = multipart("mixed", entity)
    raw = message(entity)
    root = tree_of(raw)
    depth, node = 0, root
    while node.sub_parts:
        depth, node = depth + 1, node.sub_parts[0]
    assert depth <= MAX_DEPTH
    assert node.type == "application/octet-stream"  # the rest, opaque
    parse_structure(root)
