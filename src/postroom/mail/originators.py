"""The one RFC 5322 address-list parser: what DMARC, SPOOF_PROTECTION and IMAP ENVELOPE
read from From, Sender, Reply-To (and To/Cc/Bcc for ENVELOPE).

Owns `parse_addresses`: an unfolded field value → `AddressList` (mailboxes and groups, in
order) or `Unparsable` (why). Grammar: RFC 5322 §3.4 address-list with comments (nested,
quoted-pairs), quoted strings, domain literals, groups (RFC 6854 allows them in From and
Sender), and the obsolete forms of §4.4 (empty list elements, obs-route, obs-phrase with
dots, obs-local-part / obs-domain with CFWS around the dots); RFC 6532 UTF-8 in atoms and
quoted strings. Encoded-words (RFC 2047) are atoms: display names are returned as
written, never decoded, so nothing decoded can turn into syntax.

Decisions (the point of this module: a check must never decide on part of a field):
- Anything whose reading is not certain is `Unparsable`, never "fewer addresses": an
  unterminated comment, quoted string or domain literal, a stray `)`/`]`/`\\`, `<` without
  `>`, two words or two addresses with no `,` between them, `@` twice, control
  characters, and more than `max_addresses` mailboxes.
- Two lenient readings stay, because they hide nothing: a bare local part without
  `@domain` (`nobody`) is a mailbox whose `domain` is None (IMAP shows MISSING_DOMAIN;
  checks see no usable domain), and a group still open at the end of the field is closed.
Invariants: work is linear in the field length (tokens come from possessive regexes in
one pass; the parse stops at `max_addresses` and at MAX_ADDRESS_TOKENS per address); the
common one-mailbox forms take a one-regex path that reads them exactly as the full
parser does (tests/mail/test_originators.py compares them); never raises; sans-IO.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

# Each From/Sender/Reply-To address costs the submission check a store lookup; real mail
# names one author (RFC 5322 §3.6.2 allows several). ENVELOPE passes None (no limit).
MAX_ORIGINATOR_ADDRESSES = 100
# Tokens in one list element (display name, route, local part, domain): a local part is
# at most 64 octets and a domain 255 (RFC 5321 §4.5.3.1), so only a display name of
# hundreds of words could reach this. It bounds the work one address can cost.
MAX_ADDRESS_TOKENS = 512

_ATEXT = "A-Za-z0-9!#$%&'*+\\-/=?^_`{|}~\u0080-\U0010ffff"
_TOKEN = re.compile(
    r"(?P<space>[ \t]++)"
    rf"|(?P<atom>[{_ATEXT}]++)"
    r'|(?P<quoted>"[^"\\]*+(?:\\.[^"\\]*+)*+")'
    r"|(?P<literal>\[[^\[\]\\]*+(?:\\.[^\[\]\\]*+)*+\])"
    r"|(?P<special>[<>@,;:.])"
    r"|(?P<comment>\()",
    re.DOTALL,
)
_DOT_ATOM = rf"[{_ATEXT}]++(?:\.[{_ATEXT}]++)*+"
# The common forms — `local@domain` and `Name Words <local@domain>` / `"Name" <…>` with
# no comments, dots in the name or quoted-pairs — read with one regex; anything else goes
# through the full parser, which reads these forms the same way (tests check it).
_SIMPLE = re.compile(
    rf"[ \t]*+(?:(?:(?P<name>[{_ATEXT}]++(?:[ \t]++[{_ATEXT}]++)*+)[ \t]*+"
    r'|"(?P<quoted>[^"\\\x00-\x1f\x7f]*+)"[ \t]*+)?'
    rf"<(?P<local>{_DOT_ATOM})@(?P<domain>{_DOT_ATOM})>"
    rf"|(?P<bare_local>{_DOT_ATOM})@(?P<bare_domain>{_DOT_ATOM}))[ \t]*+")
_SIMPLE_MAX = 256  # longer values take the full parser (and its token limit)
_BLANKS = re.compile(r"[ \t]+")
_COMMENT_PART = re.compile(r"[^()\\]++|\\.|\(++|\)++", re.DOTALL)
# Unfolding removed every CRLF before WSP; what is left of CR/LF, and other controls
# (RFC 5322 allows them only as obsolete text), could be read differently by a client.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)
_WORDS = frozenset({"atom", "quoted"})


@dataclass(frozen=True, slots=True)
class Mailbox:
    """One mailbox. `display_name` as written (quotes removed, encoded-words kept), None
    without one; `route` the obsolete source route (`@a,@b`); `local_part` unquoted;
    `domain` as written (a dot-atom or a `[literal]`), None when the address has none."""

    display_name: str | None
    route: str | None
    local_part: str
    domain: str | None

    @property
    def address(self) -> str:
        return self.local_part if self.domain is None else f"{self.local_part}@{self.domain}"


@dataclass(frozen=True, slots=True)
class Group:
    """RFC 5322 §3.4 group: `display_name: member, member;`."""

    display_name: str
    members: tuple[Mailbox, ...]


@dataclass(frozen=True, slots=True)
class AddressList:
    entries: tuple[Mailbox | Group, ...]

    @property
    def mailboxes(self) -> tuple[Mailbox, ...]:
        """Every mailbox, group members included, in order."""
        out: list[Mailbox] = []
        for entry in self.entries:
            out.extend(entry.members if isinstance(entry, Group) else (entry,))
        return tuple(out)


@dataclass(frozen=True, slots=True)
class Unparsable:
    """The field cannot be read with certainty; `reason` says where it failed."""

    reason: str


ParsedAddresses = AddressList | Unparsable


class _SyntaxProblem(Exception):
    pass


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "atom", "quoted", "literal", one of <>@,;:. or "end"
    text: str  # quoted strings unquoted and unescaped
    spaced: bool  # whitespace or a comment came before it
    comment: str | None = None  # the last comment right before it, unescaped


def parse_addresses(text: str, max_addresses: int | None = MAX_ORIGINATOR_ADDRESSES
                    ) -> ParsedAddresses:
    """An unfolded address-list field value (RFC 5322 §3.4) read in full, or Unparsable."""
    control = _CONTROL.search(text)
    if control is not None:
        return Unparsable(f"control character {control.group()!r} at offset {control.start()}")
    simple = _SIMPLE.fullmatch(text) if len(text) <= _SIMPLE_MAX else None
    if simple is not None and max_addresses != 0:
        return AddressList((_simple_mailbox(simple),))
    return _parse_full(text, max_addresses)


def _simple_mailbox(match: re.Match[str]) -> Mailbox:
    if match.group("bare_local") is not None:
        return Mailbox(None, None, match.group("bare_local"), match.group("bare_domain"))
    name = match.group("name")
    display = _BLANKS.sub(" ", name) if name is not None else match.group("quoted")
    return Mailbox(display or None, None, match.group("local"), match.group("domain"))


def _parse_full(text: str, max_addresses: int | None) -> ParsedAddresses:
    try:
        return AddressList(tuple(_Parser(_tokens(text), max_addresses).address_list()))
    except _SyntaxProblem as problem:
        return Unparsable(str(problem))


def _tokens(text: str) -> Iterator[_Token]:
    """RFC 5322 §3.2 lexical tokens; comments and whitespace only set `spaced`."""
    pos, spaced, comment = 0, False, None
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise _SyntaxProblem(_unexpected_character(text, pos))
        kind = match.lastgroup or ""
        if kind == "comment":
            end = _comment_end(text, pos)
            pos, spaced, comment = end, True, _comment_text(text[pos + 1 : end - 1])
            continue
        pos = match.end()
        if kind == "space":
            spaced = True
            continue
        value = match.group()
        if kind == "quoted":
            value = _QUOTED_PAIR.sub(r"\1", value[1:-1]) if "\\" in value else value[1:-1]
        yield _Token(value if kind == "special" else kind, value, spaced, comment)
        spaced, comment = False, None
    yield _Token("end", "", spaced, comment)


def _comment_text(inner: str) -> str | None:
    """A comment's text as a display name: quoted-pairs undone, blanks collapsed."""
    text = _BLANKS.sub(" ", _QUOTED_PAIR.sub(r"\1", inner)).strip()
    return text or None


def _unexpected_character(text: str, pos: int) -> str:
    char = text[pos]
    if char == '"':
        return f"unterminated quoted string at offset {pos}"
    if char == "[":
        return f"unterminated domain literal at offset {pos}"
    return f"unexpected {char!r} at offset {pos}"


def _comment_end(text: str, start: int) -> int:
    """Offset just past the (nested) comment opening at `start` (RFC 5322 §3.2.2)."""
    depth, pos = 0, start
    while pos < len(text):
        part = _COMMENT_PART.match(text, pos)
        if part is None:  # only a backslash at the very end fails to match
            break
        run = part.group()
        if run[0] == "(":
            depth += len(run)
        elif run[0] == ")":
            if len(run) >= depth:
                return pos + depth  # the comment ends inside this run of ")"
            depth -= len(run)
        pos = part.end()
    raise _SyntaxProblem(f"unterminated comment at offset {start}")


class _Parser:
    """Recursive descent over the token stream with one token of lookahead."""

    def __init__(self, tokens: Iterator[_Token], max_addresses: int | None) -> None:
        self._tokens = tokens
        self._next = next(tokens)
        self._max = max_addresses
        self._count = 0
        self._element_tokens = 0  # tokens taken since the current list element began

    def _take(self) -> _Token:
        self._element_tokens += 1
        if self._element_tokens > MAX_ADDRESS_TOKENS:
            raise _SyntaxProblem(f"an address of more than {MAX_ADDRESS_TOKENS} tokens")
        token, self._next = self._next, next(self._tokens, self._next)
        return token

    def _skip_empty_elements(self) -> None:
        """§4.4 obs-addr-list / obs-mbox-list: `,` with nothing before it is allowed."""
        while self._is_next(","):
            self._element_tokens = 0
            self._take()
        self._element_tokens = 0

    def _is_next(self, kind: str) -> bool:
        return _kind(self._next) == kind

    def _expect(self, kind: str) -> None:
        if not self._is_next(kind):
            raise _SyntaxProblem(f"expected {kind!r}, found {_describe(self._next)}")
        self._take()

    def address_list(self) -> list[Mailbox | Group]:
        """RFC 5322 §3.4 address-list; §4.4 obs-addr-list allows empty elements."""
        entries: list[Mailbox | Group] = []
        while True:
            self._skip_empty_elements()
            if self._is_next("end"):
                return entries
            entries.append(self._address(in_group=False))
            if self._is_next("end"):
                return entries
            self._expect(",")

    def _address(self, in_group: bool) -> Mailbox | Group:
        phrase = self._phrase()
        following = _kind(self._next)
        if following == "<":
            return self._angle_address(phrase)
        if following == ":" and not in_group:
            return self._group(phrase)
        if following == "@" or (phrase and following in (",", ";", "end")):
            # (a bare local part has no domain.) An addr-spec has no display name; the
            # comment after it is, by old convention, the person's name: IMAP shows it
            # as the ENVELOPE personal name, as Dovecot and Cyrus do.
            mailbox = self._mailbox(None, None, phrase)
            if self._next.comment is None:
                return mailbox
            return Mailbox(self._next.comment, None, mailbox.local_part, mailbox.domain)
        raise _SyntaxProblem(f"unexpected {_describe(self._next)}")

    def _phrase(self) -> list[_Token]:
        """Words and dots (RFC 5322 §4.1 obs-phrase; also a local part before `@`)."""
        words: list[_Token] = []
        while _kind(self._next) in ("word", "."):
            words.append(self._take())
        return words

    def _angle_address(self, phrase: list[_Token]) -> Mailbox:
        """name-addr / angle-addr, with §4.4 obs-route."""
        self._expect("<")
        route = self._route() if self._is_next("@") else None
        local = self._phrase()
        if not local:
            raise _SyntaxProblem(f"expected an address after '<', found {_describe(self._next)}")
        mailbox = self._mailbox(_render_phrase(phrase) or None, route, local)
        self._expect(">")
        return mailbox

    def _mailbox(self, display_name: str | None, route: str | None,
                 local: list[_Token]) -> Mailbox:
        domain = None
        if self._is_next("@"):
            self._take()
            domain = self._domain()
        self._count += 1
        if self._max is not None and self._count > self._max:
            raise _SyntaxProblem(f"more than {self._max} addresses")
        return Mailbox(display_name, route, _render_local_part(local), domain)

    def _route(self) -> str:
        """obs-route: `@a,@b:` (RFC 5322 §4.4), returned as `@a,@b`."""
        hops: list[str] = []
        while not self._is_next(":"):
            if self._is_next(","):
                self._take()
                continue
            self._expect("@")
            hops.append("@" + self._domain())
        self._take()
        return ",".join(hops)

    def _domain(self) -> str:
        """dot-atom / domain-literal / obs-domain (atoms and dots, CFWS between)."""
        if _kind(self._next) == "literal":
            return self._take().text
        parts: list[str] = []
        previous = ""
        while (kind := self._next.kind) == "." or (kind == "atom" and previous != "atom"):
            parts.append(self._take().text)
            previous = kind
        if all(part == "." for part in parts):
            raise _SyntaxProblem(f"expected a domain, found {_describe(self._next)}")
        return "".join(parts)

    def _group(self, phrase: list[_Token]) -> Group:
        """RFC 5322 §3.4 group; RFC 6854 lets From and Sender carry one."""
        self._take()  # ":"
        members: list[Mailbox] = []
        while True:
            self._skip_empty_elements()
            if self._is_next(";") or self._is_next("end"):
                break
            member = self._address(in_group=True)
            assert isinstance(member, Mailbox)  # in_group: no nested group
            members.append(member)
            if not (self._is_next(";") or self._is_next("end")):
                self._expect(",")
        if self._is_next(";"):
            self._take()
        return Group(_render_phrase(phrase), tuple(members))


def _kind(token: _Token) -> str:
    """`word` for atoms and quoted strings (both are RFC 5322 `word`), else the kind."""
    return "word" if token.kind in _WORDS else token.kind


def _describe(token: _Token) -> str:
    if token.kind == "end":
        return "end of field"
    return f"{token.kind} {token.text[:40]!r}"


def _render_phrase(words: list[_Token]) -> str:
    """A display name as written: one space where the field had whitespace or a comment."""
    out: list[str] = []
    for word in words:
        if out and word.spaced:
            out.append(" ")
        out.append(word.text)
    return "".join(out)


def _render_local_part(words: list[_Token]) -> str:
    """word *("." word) (obs-local-part: CFWS may surround the dots); two words in a row
    would be two names for one address, so they are refused."""
    previous = "."
    for word in words:
        kind = _kind(word)
        if kind == "word" and previous == "word":
            raise _SyntaxProblem(f"two words in a row in a local part: {word.text[:40]!r}")
        previous = kind
    if not any(_kind(word) == "word" for word in words):
        raise _SyntaxProblem("a local part without a word")
    return "".join(word.text for word in words)
