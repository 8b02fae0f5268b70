"""The Authentication-Results header field (RFC 8601): rendering ours, stripping forgeries.

Owns: `render_authentication_results` (the field value), `render_header` (the whole folded
field), and `strip_forged_authresults` (RFC 8601 §5: before adding ours, remove fields
that claim our authserv-id, so a sender cannot pre-fill "dkim=pass" under our name).

Invariants: property values are emitted as RFC 2045 tokens, bare addresses
(`local@domain`, allowed by RFC 8601 §2.2 pvalue), or quoted strings, never raw text; reasons are
quoted, single-line and bounded; stripping touches only the header section and keeps
every other field byte for byte. Results are taken structurally (SpfResult, DkimResult,
ArcResult, DmarcResult), so this module imports none of the checking libraries. The ARC
result (RFC 8617 §4.4, RFC 8601 registry method "arc") comes before DMARC's, which it
may have changed; it is said only when the message carried ARC fields, so mail without a
chain keeps the field it always had (and our own seal then starts at cv=none).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from postroom.mailauth.arc import ArcResult
    from postroom.mailauth.dkim import DkimResult
    from postroom.mailauth.dmarc import DmarcResult
    from postroom.mailauth.spf import SpfResult

HEADER_NAME = "Authentication-Results"
_MAX_REASON = 200

# RFC 2045 §5.1 token: no SPACE, CTLs or tspecials.
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")
# RFC 5322 dot-atom local part "@" domain: RFC 8601 §2.2 lets pvalue be an address.
_ATOM = r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+"
_ADDRESS_RE = re.compile(rf"{_ATOM}(\.{_ATOM})*@[A-Za-z0-9.-]+")


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _pvalue(text: str) -> str:
    if _TOKEN_RE.fullmatch(text) or _ADDRESS_RE.fullmatch(text):
        return text
    return _quoted(text)


def _reason(text: str) -> str:
    single_line = re.sub(r"[\x00-\x1f\x7f]+", " ", text).strip()
    return f" reason={_quoted(single_line[:_MAX_REASON])}" if single_line else ""


def render_spf(spf: SpfResult) -> str:
    reason = _reason(spf.explanation) if spf.result in {"temperror", "permerror"} else ""
    value = _pvalue(spf.property_value) if spf.property_value else _quoted("")
    return f"spf={spf.result}{reason} {spf.property_name}={value}"


def render_dkim(dkim: DkimResult) -> str:
    """RFC 8601 §2.7.1 / RFC 6008: header.d, header.s and an 8-character header.b."""
    parts = [f"dkim={dkim.result}"]
    if dkim.result != "pass":
        parts.append(_reason(dkim.reason).lstrip())
    if dkim.domain:
        parts.append(f"header.d={_pvalue(dkim.domain)}")
    if dkim.selector:
        parts.append(f"header.s={_pvalue(dkim.selector)}")
    if dkim.header_b:
        parts.append(f"header.b={_pvalue(dkim.header_b)}")
    return " ".join(part for part in parts if part)


def render_arc(arc: ArcResult) -> str:
    """RFC 8617 §4.4 / RFC 8601 registry: arc=<cv>, the newest set and sealer in a
    comment, the reason of a failure."""
    parts = [f"arc={arc.result}"]
    if arc.result != "pass":
        parts.append(_reason(arc.reason).lstrip())
    if arc.instance:
        sealer = re.sub(r"[^A-Za-z0-9.-]", "", arc.sealer)
        parts.append(f"(i={arc.instance}" + (f" d={sealer})" if sealer else ")"))
    return " ".join(part for part in parts if part)


def render_dmarc(dmarc: DmarcResult) -> str:
    """RFC 7489 §11.2: dmarc=<result> header.from=<domain>, policy in a comment (with
    the §6.7 override reason when local policy changed the disposition)."""
    comment = ""
    if dmarc.policy is not None:
        override = f" override={dmarc.override}" if dmarc.override else ""
        comment = f" (p={dmarc.policy} dis={dmarc.disposition}{override})"
    return f"dmarc={dmarc.result}{comment} header.from={_pvalue(dmarc.from_domain or '')}"


def _resinfos(spf: SpfResult | None, dkim: Sequence[DkimResult] | None,
              dmarc: DmarcResult | None, arc: ArcResult | None = None) -> list[str]:
    """`dkim` None: DKIM was not checked (nothing said); empty: checked, no signature."""
    parts = [render_spf(spf)] if spf is not None else []
    if dkim is not None and not dkim:
        parts.append("dkim=none")  # RFC 8601 §2.7.1: "The message was not signed."
    parts.extend(render_dkim(signature) for signature in dkim or ())
    if arc is not None:
        parts.append(render_arc(arc))
    if dmarc is not None:
        parts.append(render_dmarc(dmarc))
    return parts


def render_authentication_results(authserv_id: str, *, spf: SpfResult | None = None,
                                  dkim: Sequence[DkimResult] | None = None,
                                  dmarc: DmarcResult | None = None) -> str:
    """The field value on one line: "mx.example.com; spf=pass smtp.mailfrom=...; ...".

    `dkim` is None when DKIM was not checked, else one result per signature: an empty
    sequence (an unsigned message) gives "dkim=none". With no results at all it is
    "mx.example.com; none" (RFC 8601 §2.2 no-result).
    """
    parts = _resinfos(spf, dkim, dmarc) or ["none"]
    return "; ".join([_pvalue(authserv_id), *parts])


def render_header(authserv_id: str, *, spf: SpfResult | None = None,
                  dkim: Sequence[DkimResult] | None = None,
                  dmarc: DmarcResult | None = None, arc: ArcResult | None = None) -> bytes:
    """The whole field, one result per folded line, CRLF-terminated, ready to prepend.
    `arc`: the chain's result when the message carried ARC fields, else None."""
    parts = _resinfos(spf, dkim, dmarc, arc)
    if not parts:
        return f"{HEADER_NAME}: {_pvalue(authserv_id)}; none\r\n".encode()
    value = ";\r\n\t".join([_pvalue(authserv_id), *parts])
    return f"{HEADER_NAME}: {value}\r\n".encode()


# -- stripping ---------------------------------------------------------------------------

_HEADER_END_RE = re.compile(rb"\r?\n\r?\n")
_LINE_RE = re.compile(rb"[^\n]*\n|[^\n]+$")


def strip_forged_authresults(raw: bytes, authserv_id: str) -> bytes:
    """Remove Authentication-Results fields whose authserv-id is ours (case-insensitive)."""
    match = _HEADER_END_RE.search(raw)
    # The header section ends with its last line's line break; the blank line stays with
    # the body.
    if match is None:
        split = len(raw)
    else:
        split = match.start() + (2 if raw[match.start()] == ord("\r") else 1)
    header, rest = raw[:split], raw[split:]
    ours = authserv_id.strip().lower()
    kept = [field for field in _fields(header) if _authserv_id(field) != ours]
    return b"".join(kept) + rest


def _fields(header: bytes) -> list[bytes]:
    """Header fields with their continuation lines (RFC 5322 §2.2.3)."""
    fields: list[bytes] = []
    for line in _LINE_RE.findall(header):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line
        else:
            fields.append(line)
    return fields


def _authserv_id(field: bytes) -> str | None:
    """The lower-cased authserv-id of an Authentication-Results field, else None."""
    name, sep, value = field.partition(b":")
    if not sep or name.strip().lower() != b"authentication-results":
        return None
    text = _skip_cfws(re.sub(r"\r?\n", "", value.decode("utf-8", "replace")))
    if text.startswith('"'):
        quoted = re.match(r'"((?:[^"\\]|\\.)*)"', text)
        return re.sub(r"\\(.)", r"\1", quoted.group(1)).lower() if quoted else ""
    token = re.match(r'[^\s;()"]*', text)
    return token.group(0).lower() if token else ""


def _skip_cfws(text: str) -> str:
    """Drop leading whitespace and (possibly nested) comments (RFC 5322 §3.2.2)."""
    text = text.lstrip()
    while text.startswith("("):
        depth, index = 0, 0
        while index < len(text):
            char = text[index]
            if char == "\\":
                index += 1
            elif char == "(":
                depth += 1
            elif char == ")":
                depth -= 1
                if depth == 0:
                    break
            index += 1
        text = text[index + 1:].lstrip()
    return text
