"""The message as Sieve sees it: header fields (editable by editheader), addresses,
body text, size — built from the raw bytes, without I/O.

Owns the views the tests read (RFC 5228 §5: header values are unfolded and RFC 2047
decoded, §2.7.4 addresses are addr-specs; RFC 5173 body transforms) and the header list
that `addheader` / `deleteheader` change (RFC 5293 §5: later tests see the changes),
plus rendering the edited message for delivery.

Invariants: the body is parsed at most once, lazily, and only as far as the limits in
`MAX_BODY_PARTS` allow; header names compare case-insensitively; the raw bytes are never
changed — an edited message is rendered anew from the field list and the untouched body.
"""

from __future__ import annotations

import email
import email.header
import email.policy
import email.utils
import html.parser
import re
from dataclasses import dataclass, field

MAX_BODY_PARTS = 100
_CHARSET = re.compile(r'charset\s*=\s*"?([A-Za-z0-9._:-]+)"?', re.IGNORECASE)


def _decode_words(value: str) -> str:
    """RFC 2047 encoded words in a header value; undecodable words stay as written."""
    if "=?" not in value:
        return value
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except (ValueError, LookupError, UnicodeError):
        return value


def _unfold(value: str) -> str:
    return value.replace("\r\n", "").replace("\n", "").strip()


@dataclass(slots=True)
class SieveMessage:
    fields: list[tuple[str, str]]  # (name as written, raw value without the colon)
    body: bytes  # everything after the blank line
    size: int
    _texts: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    # Decoded values and addresses by lower-cased field name: rules test the same fields
    # again and again. Emptied whenever editheader changes `fields`.
    _values: dict[str, list[str]] = field(default_factory=dict)
    _addresses: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def from_bytes(cls, raw: bytes) -> SieveMessage:
        head, _separator, body = _split(raw)
        fields: list[tuple[str, str]] = []
        for line in _field_lines(head):
            name, colon, value = line.partition(":")
            if colon:
                fields.append((name.strip(), value))
        return cls(fields, body, len(raw))

    # -- header ----------------------------------------------------------------------
    def values(self, name: str) -> list[str]:
        """Every field `name`, unfolded and decoded, in order (RFC 5228 §5.7)."""
        wanted = name.lower()
        found = self._values.get(wanted)
        if found is None:
            found = self._values[wanted] = [
                _decode_words(_unfold(value)) for field_name, value in self.fields
                if field_name.lower() == wanted]  # fmt: skip
        return list(found)

    def values_at(self, position: int) -> str:
        """The decoded value of the field at `position` in `fields`."""
        return _decode_words(_unfold(self.fields[position][1]))

    def has(self, name: str) -> bool:
        wanted = name.lower()
        return any(field_name.lower() == wanted for field_name, _ in self.fields)

    def addresses(self, name: str) -> list[str]:
        """The addr-specs in every field `name` (groups flattened; RFC 5228 §5.1)."""
        wanted = name.lower()
        cached = self._addresses.get(wanted)
        if cached is None:
            cached = self._addresses[wanted] = [
                address for value in self.values(name)
                for _, address in email.utils.getaddresses([value]) if address]
        return list(cached)

    def changed(self) -> None:
        """`fields` was edited (editheader): forget what was derived from it."""
        self._values.clear()
        self._addresses.clear()
        self._texts.clear()

    def add_field(self, name: str, value: str, *, last: bool) -> None:
        """RFC 5293 §4: at the top unless :last."""
        item = (name, " " + value)
        if last:
            self.fields.append(item)
        else:
            self.fields.insert(0, item)
        self.changed()

    def render(self) -> bytes:
        """The message with its current fields and original body."""
        lines = [f"{name}:{value}".replace("\r\n", "\n").replace("\n", "\r\n")
                 for name, value in self.fields]  # fmt: skip
        head = "\r\n".join(lines).encode("utf-8", "surrogateescape")
        return head + b"\r\n\r\n" + self.body

    # -- body (RFC 5173) -------------------------------------------------------------
    def body_texts(self, transform: str, content_types: tuple[str, ...] = ()
                   ) -> list[str]:  # fmt: skip
        """:raw — the undecoded body; :text — the text of every text/* part (HTML
        reduced to its text); :content — the decoded parts whose type matches."""
        if transform == "raw":
            return [self.body.decode("utf-8", "replace")]
        parts = self._parts()
        if transform == "text":
            return [text for kind, text in parts if kind.startswith("text/")]
        found: list[str] = []
        for kind, text in parts:
            main = kind.split("/")[0]
            for wanted in content_types:
                wanted = wanted.lower()
                if wanted == "" or wanted == kind or ("/" not in wanted and wanted == main):
                    found.append(text)
                    break
        return found

    def _parts(self) -> list[tuple[str, str]]:
        if "parts" not in self._texts:
            self._texts["parts"] = self._single_part() or _decoded_parts(self.render())
        return self._texts["parts"]

    def _single_part(self) -> list[tuple[str, str]] | None:
        """The common case without the email package: one text part whose body needs no
        transfer decoding (RFC 2045 §6.2 identity encodings)."""
        kind = (self.values("content-type") or ["text/plain"])[0]
        main, _, params = kind.partition(";")
        main = main.strip().lower() or "text/plain"
        encoding = (self.values("content-transfer-encoding") or ["7bit"])[0].strip().lower()
        if not main.startswith("text/") or encoding not in ("7bit", "8bit", "binary"):
            return None
        found = _CHARSET.search(params)
        charset = found.group(1) if found else "us-ascii"
        try:
            text = self.body.decode(charset, "replace")
        except LookupError:
            text = self.body.decode("utf-8", "replace")
        return [(main, html_text(text) if main == "text/html" else text)]


def _split(raw: bytes) -> tuple[str, bytes, bytes]:
    for separator in (b"\r\n\r\n", b"\n\n"):
        index = raw.find(separator)
        if index >= 0:
            return (raw[:index].decode("utf-8", "surrogateescape"), separator,
                    raw[index + len(separator):])  # fmt: skip
    return raw.decode("utf-8", "surrogateescape"), b"", b""


def _field_lines(head: str) -> list[str]:
    lines: list[str] = []
    for line in head.replace("\r\n", "\n").split("\n"):
        if line[:1] in (" ", "\t") and lines:
            lines[-1] += "\r\n" + line
        elif line:
            lines.append(line)
    return lines


class _TextOnly(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag in ("script", "style"):
            self.skipping += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self.skipping:
            self.skipping -= 1

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.chunks.append(data)


def html_text(markup: str) -> str:
    parser = _TextOnly()
    parser.feed(markup)
    parser.close()
    return " ".join(" ".join(parser.chunks).split())


def _decoded_parts(raw: bytes) -> list[tuple[str, str]]:
    """(content type, decoded text) of each leaf part, at most MAX_BODY_PARTS."""
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    found: list[tuple[str, str]] = []
    for part in message.walk():
        if len(found) >= MAX_BODY_PARTS:
            break
        if part.is_multipart():
            continue
        kind = part.get_content_type().lower()
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            payload = b""
        charset = part.get_content_charset() or "us-ascii"
        try:
            text = payload.decode(charset, "replace")
        except LookupError:
            text = payload.decode("utf-8", "replace")
        if kind == "text/html":
            text = html_text(text)
        found.append((kind, text))
    return found
