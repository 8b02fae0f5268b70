"""IMAP ENVELOPE data from a message header block (RFC 9051 §7.5.2).

Owns the address-list tokenizer that keeps display names and groups exactly as written
(the stdlib decodes encoded-words and flattens groups, and IMAP wants neither).

Output shape: a list of ten items — date, subject, from, sender, reply-to, to, cc, bcc,
in-reply-to, message-id — each `str` (unfolded raw header text, encoded-words NOT
decoded) or None (NIL); address fields are lists of [name, adl, mailbox, host].
Invariants: never raises on any bytes; sender and reply-to default to from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from postroom.mail.headers import first_values

Address = list[str | None]
Envelope = list["str | list[Address] | None"]

# Dovecot's placeholder when an address has no domain: a NIL host would read as a group
# marker (RFC 9051 §7.5.2), so something must be there.
MISSING_DOMAIN = "MISSING_DOMAIN"
_SPECIALS = frozenset('()<>@,;:\\"[]')
_ENVELOPE_FIELDS = (
    "date", "subject", "from", "sender", "reply-to", "to", "cc", "bcc", "in-reply-to",
    "message-id",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "word" (atom or quoted string), "literal" (domain literal) or a special
    text: str


def render_envelope(header: bytes) -> Envelope:
    """The ENVELOPE of a message whose header block is `header`."""
    values = first_values(header, _ENVELOPE_FIELDS)
    from_ = _addresses(values.get("from"))
    return [
        values.get("date") or None,
        values.get("subject") or None,
        from_,
        _addresses(values.get("sender")) or from_,
        _addresses(values.get("reply-to")) or from_,
        _addresses(values.get("to")),
        _addresses(values.get("cc")),
        _addresses(values.get("bcc")),
        values.get("in-reply-to") or None,
        values.get("message-id") or None,
    ]


def _addresses(value: str | None) -> list[Address] | None:
    return (parse_address_list(value) or None) if value else None


def tokenize(text: str) -> list[_Token]:
    """RFC 5322 §3.2 lexical tokens; comments are dropped, quoted-pairs unescaped."""
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        char = text[pos]
        if char in " \t\r\n":
            pos += 1
        elif char == "(":
            pos = _skip_comment(text, pos)
        elif char == '"':
            pos, word = _read_quoted(text, pos)
            tokens.append(_Token("word", word))
        elif char == "[":
            end = text.find("]", pos)
            end = len(text) - 1 if end < 0 else end
            tokens.append(_Token("literal", text[pos : end + 1]))
            pos = end + 1
        elif char in _SPECIALS:
            tokens.append(_Token(char, char))
            pos += 1
        else:
            start = pos
            while pos < len(text) and text[pos] not in _SPECIALS and text[pos] not in " \t\r\n":
                pos += 1
            tokens.append(_Token("word", text[start:pos]))
    return tokens


def _skip_comment(text: str, pos: int) -> int:
    depth = 0
    while pos < len(text):
        char = text[pos]
        if char == "\\":
            pos += 2
            continue
        depth += {"(": 1, ")": -1}.get(char, 0)
        pos += 1
        if depth == 0:
            break
    return pos


def _read_quoted(text: str, pos: int) -> tuple[int, str]:
    out: list[str] = []
    pos += 1
    while pos < len(text) and text[pos] != '"':
        if text[pos] == "\\" and pos + 1 < len(text):
            pos += 1
        out.append(text[pos])
        pos += 1
    return pos + 1, "".join(out)


@dataclass(slots=True)
class _Mailbox:
    """One address being assembled from tokens."""

    phrase: list[str] = field(default_factory=list)
    local: list[str] = field(default_factory=list)
    domain: list[str] = field(default_factory=list)
    route: list[str] = field(default_factory=list)
    state: str = "phrase"  # phrase → (angle) → local → domain
    has_angle: bool = False

    @property
    def is_empty(self) -> bool:
        return not (self.phrase or self.local or self.domain)

    def render(self) -> Address:
        if self.has_angle or self.local or self.domain:
            name = " ".join(self.phrase) if self.has_angle else None
            mailbox = "".join(self.local)
        else:  # a bare word list with no "@": treat the words as the mailbox
            name, mailbox = None, "".join(self.phrase)
        host = "".join(self.domain) or MISSING_DOMAIN
        adl = ",".join(self.route) or None
        return [name or None, adl, mailbox or None, host]


def parse_address_list(text: str) -> list[Address]:
    """RFC 5322 §3.4 address-list → IMAP address structures, groups as start/end markers.

    Lenient: whatever the tokens, the result is a best-effort list, never an exception.
    """
    result: list[Address] = []
    current = _Mailbox()
    in_group = False
    for token in tokenize(text):
        kind = token.kind
        if kind == ":" and current.state == "phrase" and not in_group:
            result.append([None, None, " ".join(current.phrase) or "", None])  # group start
            current, in_group = _Mailbox(), True
        elif kind == ":" and current.state == "angle-route":
            current.state = "angle-local"
        elif kind in (",", ";") and not current.state.startswith("angle"):
            if not current.is_empty:
                result.append(current.render())
            current = _Mailbox()
            if kind == ";" and in_group:
                result.append([None, None, None, None])  # group end
                in_group = False
        else:
            _feed(current, token)
    if not current.is_empty:
        result.append(current.render())
    if in_group:
        result.append([None, None, None, None])
    return result


def _feed(box: _Mailbox, token: _Token) -> None:
    kind, state = token.kind, box.state
    if state == "angle-route":
        if kind == ",":
            box.route.append("")
        else:
            box.route[-1] += token.text
    elif kind == "<" and not box.has_angle:
        box.state, box.has_angle = "angle-local", True
    elif kind == ">":
        box.state = "done"
    elif kind == "@" and state == "angle-local" and not box.local:
        box.state = "angle-route"
        box.route.append("@")
    elif kind == "@":
        if state == "phrase":
            box.local, box.phrase = box.phrase, []
            box.local = ["".join(box.local)]
        box.state = "angle-domain" if state.startswith("angle") else "domain"
    elif state == "phrase":
        box.phrase.append(token.text)
    elif state == "angle-local":
        box.local.append(token.text)
    elif state in ("domain", "angle-domain"):
        box.domain.append(token.text)
