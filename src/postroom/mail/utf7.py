"""Modified UTF-7 mailbox-name codec (RFC 3501 §5.1.3, kept by RFC 9051 §5.1.3 for rev1 clients).

Owns: `encode_utf7(str) -> str` and `decode_utf7(str) -> str`.

Invariants:
- `decode_utf7(encode_utf7(s)) == s` for every `str` without lone surrogates.
- Decoding is strict: anything RFC 3501 forbids raises `Utf7Error` (a `BadSyntax`), never
  another exception. Forbidden: raw characters outside printable US-ASCII, an unterminated
  `&` shift, base64 that encodes printable US-ASCII, two adjacent shifts (`&AAA-&AAA-`),
  non-zero padding bits, padding `=`, odd UTF-16 byte counts and broken surrogate pairs.
"""

from __future__ import annotations

import base64
import binascii

from postroom.errors import BadSyntax


class Utf7Error(BadSyntax):
    """A mailbox name is not valid modified UTF-7."""


def _is_printable_ascii(ch: str) -> bool:
    return 0x20 <= ord(ch) <= 0x7E


def _encode_run(run: str) -> str:
    raw = run.encode("utf-16-be", "surrogatepass")
    # RFC 3501 §5.1.3: modified BASE64 with "," for "/" and no "=" padding.
    return "&" + base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",") + "-"


def encode_utf7(name: str) -> str:
    """Encode a Unicode mailbox name as modified UTF-7."""
    out: list[str] = []
    run: list[str] = []
    for ch in name:
        if _is_printable_ascii(ch):
            if run:
                out.append(_encode_run("".join(run)))
                run = []
            out.append("&-" if ch == "&" else ch)
        else:
            run.append(ch)
    if run:
        out.append(_encode_run("".join(run)))
    return "".join(out)


def _decode_run(b64: str) -> str:
    if not b64 or "=" in b64 or "/" in b64:
        raise Utf7Error("bad modified BASE64 run")
    standard = b64.replace(",", "/")
    padded = standard + "=" * (-len(standard) % 4)
    try:
        raw = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Utf7Error("bad modified BASE64 run") from exc
    # Round-trip check rejects non-zero leftover bits and over-long runs.
    if base64.b64encode(raw).decode("ascii").rstrip("=") != standard or len(raw) % 2:
        raise Utf7Error("bad modified BASE64 padding")
    try:
        text = raw.decode("utf-16-be")  # strict: lone surrogates raise
    except UnicodeDecodeError as exc:
        raise Utf7Error("bad UTF-16 in modified UTF-7") from exc
    if any(_is_printable_ascii(ch) for ch in text):
        # RFC 3501 §5.1.3: printable US-ASCII MUST represent itself.
        raise Utf7Error("printable ASCII encoded in BASE64")
    return text


def decode_utf7(name: str) -> str:
    """Decode a modified UTF-7 mailbox name; raise `Utf7Error` on any violation."""
    out: list[str] = []
    i = 0
    previous_was_run = False
    while i < len(name):
        ch = name[i]
        if not _is_printable_ascii(ch):
            raise Utf7Error("raw non-ASCII or control character in mailbox name")
        if ch != "&":
            out.append(ch)
            i += 1
            previous_was_run = False
            continue
        end = name.find("-", i + 1)
        if end < 0:
            raise Utf7Error("unterminated '&' shift in mailbox name")
        if end == i + 1:
            out.append("&")
            previous_was_run = False
        else:
            if previous_was_run:
                raise Utf7Error("adjacent BASE64 runs must be merged")
            out.append(_decode_run(name[i + 1 : end]))
            previous_was_run = True
        i = end + 1
    return "".join(out)
