"""A message as the set of tokens the junk classifier counts (sans-IO).

Owns `tokenize`. Tokens (mox's and SpamBayes' kind, simplified): the words of the text
parts (decoded from their transfer encoding and charset; HTML with its tags removed),
lowercased, 3 to `MAX_WORD` characters; the words of the Subject prefixed `s:`; the
From address and its domain (`from:`, `fromdomain:`); the host of every URL (`url:`), so
a link to a known spam host counts whatever the text around it; and a few header facts
(`h:` the content type of each part, whether there is a List-Id, the mailer).

Invariants (bounds): at most `MAX_TEXT` characters of text are read per message, at most
`MAX_PARTS` parts are looked at, and at most `MAX_TOKENS` distinct tokens come out; the
result is a set (a word repeated counts once, as in a Robinson classifier).
"""

from __future__ import annotations

import email
import re
from email.header import decode_header
from email.message import Message
from email.policy import compat32
from email.utils import getaddresses

MAX_WORD = 24
MAX_TEXT = 200_000
MAX_PARTS = 100
MAX_TOKENS = 2000
MAX_HEADER_VALUE = 1000

_WORD = re.compile(r"[^\W_]{3,}(?:['’.-][^\W_]+)*")
_URL = re.compile(r"(?i)\bhttps?://([a-z0-9.-]{1,253})")
_TAG = re.compile(r"<[^>]{0,2000}>")
_NUMBERS = re.compile(r"\d+")


def tokenize(message: bytes) -> frozenset[str]:
    parsed = email.message_from_bytes(message, policy=compat32)
    tokens: set[str] = set()
    _header_tokens(parsed, tokens)
    budget = MAX_TEXT
    for count, part in enumerate(parsed.walk()):
        if count >= MAX_PARTS or budget <= 0 or len(tokens) >= MAX_TOKENS:
            break
        tokens.add("h:type:" + part.get_content_type()[:60])
        if part.get_content_maintype() != "text" or part.is_multipart():
            continue
        text = _text_of(part)[:budget]
        budget -= len(text)
        _text_tokens(text, part.get_content_subtype() == "html", tokens)
    return frozenset(sorted(tokens)[:MAX_TOKENS])


def _header_tokens(parsed: Message, tokens: set[str]) -> None:
    subject = _header(parsed, "Subject")
    tokens.update("s:" + word for word in _words(subject))
    for _, address in getaddresses([_header(parsed, "From")])[:5]:
        address = address.strip().lower()
        if "@" in address and len(address) <= 254:
            tokens.add("from:" + address)
            tokens.add("fromdomain:" + address.rpartition("@")[2])
    if parsed.get("List-Id") is not None:
        tokens.add("h:list-id")
    mailer = _header(parsed, "X-Mailer") or _header(parsed, "User-Agent")
    if mailer:
        tokens.add("h:mailer:" + _NUMBERS.sub("", mailer.lower())[:40].strip())


def _header(parsed: Message, name: str) -> str:
    raw = parsed.get(name)
    if raw is None:
        return ""
    try:
        decoded = decode_header(str(raw)[:MAX_HEADER_VALUE])
    except (ValueError, LookupError):
        return str(raw)[:MAX_HEADER_VALUE]
    return "".join(_decode(value, charset) for value, charset in decoded)


def _decode(value: str | bytes, charset: str | None) -> str:
    if isinstance(value, str):
        return value
    try:
        return value.decode(charset or "utf-8", "replace")
    except LookupError:
        return value.decode("utf-8", "replace")


def _text_of(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    return _decode(payload[: MAX_TEXT * 4], part.get_content_charset())


def _text_tokens(text: str, is_html: bool, tokens: set[str]) -> None:
    for host in _URL.findall(text):
        tokens.add("url:" + host.lower().rstrip("."))
    if is_html:
        text = _TAG.sub(" ", text)
    for word in _words(text):
        tokens.add(word)
        if len(tokens) >= MAX_TOKENS:
            return


def _words(text: str) -> list[str]:
    return [word for word in (match.lower() for match in _WORD.findall(text))
            if len(word) <= MAX_WORD]
