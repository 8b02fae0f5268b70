"""BODY and BODYSTRUCTURE data from a MessageMeta (RFC 9051 §7.5.2, RFC 3501 §7.4.2).

Owns the shape of the data only; imap/wire renders it: `str` as a string, `int` as a
number, `None` as NIL, `list` as a parenthesised list.

Shapes (extension data only when `extensible`):
- basic:     [TYPE, SUBTYPE, params, id, description, ENCODING, size, md5, dsp, lang, loc]
- text:      [..., size, lines, md5, dsp, lang, loc]
- message:   [..., size, envelope, body, lines, md5, dsp, lang, loc]
- multipart: [body, body, ..., SUBTYPE, params, dsp, lang, loc]
  The renderer must write consecutive child bodies with no space between them
  (RFC 9051 body-type-mpart = 1*body SP media-subtype).
Type, subtype, encoding and parameter names are upper-case as in the RFC examples;
parameter values keep their case. params is [NAME, value, ...] or None; dsp is
[disposition, params] or None; lang is None, a string, or a list of strings.
A non-ASCII parameter value is re-encoded as an RFC 2231 extended parameter
(NAME* "utf-8''%XX…") so the response stays ASCII for clients without UTF8=ACCEPT.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from postroom.mail.mimetree import MessageMeta, Part

BodyData = list[Any]


def body_structure(meta: MessageMeta, extensible: bool) -> BodyData:
    """BODYSTRUCTURE (extensible=True) or BODY (extensible=False) of a whole message."""
    return render_part(meta.root, extensible)


def render_part(part: Part, extensible: bool) -> BodyData:
    if part.is_multipart and part.children:
        return _render_multipart(part, extensible)
    data: BodyData = [
        part.type.upper(),
        part.subtype.upper(),
        render_params(part.params),
        part.id,
        part.description,
        part.encoding.upper(),
        part.size,
    ]
    if part.is_embedded_message and part.envelope is not None:
        # RFC 9051 body-type-msg: envelope, the embedded message's body, line count.
        data += [part.envelope, render_part(part.children[0], extensible), part.lines or 0]
    elif part.type == "text":
        data.append(part.lines or 0)
    if extensible:
        data += [part.md5, *_render_extension(part)]
    return data


def _render_multipart(part: Part, extensible: bool) -> BodyData:
    data: BodyData = [render_part(child, extensible) for child in part.children]
    data.append(part.subtype.upper())
    if extensible:
        data += [render_params(part.params), *_render_extension(part)]
    return data


def _render_extension(part: Part) -> BodyData:
    """body-fld-dsp, body-fld-lang, body-fld-loc."""
    disposition = (
        [part.disposition, render_params(part.disposition_params)] if part.disposition else None
    )
    language: str | list[str] | None
    if not part.language:
        language = None
    elif len(part.language) == 1:
        language = part.language[0]
    else:
        language = list(part.language)
    return [disposition, language, part.location]


def render_params(params: dict[str, str]) -> list[str] | None:
    """body-fld-param: [NAME, value, ...] or None when there are none."""
    if not params:
        return None
    out: list[str] = []
    for name, value in params.items():
        if value.isascii():
            out += [name.upper(), value]
        else:  # RFC 2231 §4 extended parameter
            out += [name.upper() + "*", "utf-8''" + quote(value.encode("utf-8"), safe="")]
    return out
