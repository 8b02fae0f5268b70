"""Sieve string semantics: encoded characters (RFC 5228 §2.4.2.4) and variable
references (RFC 5229 §3), as pure functions.

Owns decoding `${hex:…}` / `${unicode:…}` (at compile time, when the script requires
"encoded-character") and splitting a string into literal text and `${name}` / `${1}`
references (`Text`), which the evaluator expands against the current variables.

Invariants: a malformed `${…}` is literal text, never an error (both RFCs say so),
except a unicode value outside Unicode's range or a surrogate, which is an error as in
Pigeonhole; expansion is bounded by the evaluator's variable size limit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ENCODED = re.compile(
    r"\$\{(?P<kind>hex|unicode):[ \t\r\n]*(?P<body>[0-9a-f]+(?:[ \t\r\n]+[0-9a-f]+)*)"
    r"[ \t\r\n]*\}", re.IGNORECASE)
# RFC 5229 §3: variable-ref = "${" [namespace] variable-name "}"; num-variable = 1*DIGIT.
_REFERENCE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*|[0-9]+)\}")


class EncodingError(ValueError):
    pass


def decode_encoded_characters(text: str) -> str:
    """RFC 5228 §2.4.2.4: hex-pairs are UTF-8 octets (each `${hex:…}` decoded on its
    own; invalid UTF-8 becomes U+FFFD), unicode-hex values are code points."""
    def replace(found: re.Match[str]) -> str:
        items = found.group("body").split()
        if found.group("kind").lower() == "hex":
            if any(len(item) % 2 for item in items):
                return found.group(0)  # not hex-pairs: literal
            return bytes.fromhex("".join(items)).decode("utf-8", "replace")
        characters = []
        for item in items:
            value = int(item, 16)
            if value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:
                raise EncodingError(f"invalid unicode character U+{item.upper()} in "
                                    "encoded character")
            characters.append(chr(value))
        return "".join(characters)

    if "${" not in text:
        return text
    return _ENCODED.sub(replace, text)


@dataclass(frozen=True, slots=True)
class Ref:
    name: str  # lower-cased variable name, or digits for a match variable

    @property
    def is_match(self) -> bool:
        return self.name.isdigit()


@dataclass(frozen=True, slots=True)
class Text:
    """A string with variable references: literal parts and `Ref`s, in order."""

    parts: tuple[str | Ref, ...]


def split_references(text: str) -> str | Text:
    """`text` itself when it has no references, else its parts."""
    if "${" not in text:
        return text
    parts: list[str | Ref] = []
    position = 0
    for found in _REFERENCE.finditer(text):
        if found.start() > position:
            parts.append(text[position:found.start()])
        parts.append(Ref(found.group("name").lower()))
        position = found.end()
    if not parts:
        return text
    if position < len(text):
        parts.append(text[position:])
    return Text(tuple(parts))


def quote_wildcards(text: str) -> str:
    """RFC 5229 §4 :quotewildcard."""
    return re.sub(r"([*?\\])", r"\\\1", text)


def quote_regex(text: str) -> str:
    """draft-ietf-sieve-regex :quoteregex: every regex metacharacter escaped."""
    return re.sub(r"([.^$*+?()\[\]{}|\\])", r"\\\1", text)
