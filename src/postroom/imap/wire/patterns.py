"""LIST/LSUB mailbox patterns (RFC 9051 §6.3.9) matched in linear time, and the limits a
mailbox name must keep to be created, renamed to or subscribed (issue 25).

Owns `MailboxPattern` (a reference joined with a pattern, compiled once per command) and
`pattern_problem` (the size caps a pattern must keep). The limits a name must keep live
in accounts/mailboxlimits.py, shared with the docker-mailserver importer.

Semantics (RFC 9051 §6.3.9): `*` matches zero or more characters, the hierarchy
delimiter `/` included; `%` matches zero or more characters but not the delimiter; every
other character matches itself. A pattern beginning with "INBOX" (in any case) matches
the name's first five characters case-insensitively (RFC 9051 §5.1: INBOX is
case-insensitive, the names of its children are not).

Invariants:
- No backtracking and no regular expression: a run of wildcards is one wildcard (`%%` is
  `%`; any run holding a `*` is `*`), so the pattern is literals separated by single
  wildcards. Matching keeps, per hierarchy level of the name, the earliest position the
  pattern so far can reach (a later one in the same level can reach nothing more), and
  finds each literal with `str.find`: at most (levels + 1) searches per literal, so the
  cost is O(literals × (levels + length)) per name, whatever the pattern looks like.
- `matches` accepts any `str` and never raises.
- Sans-IO: imports nothing from asyncio, ssl, socket or postroom.store.
"""

from __future__ import annotations

from dataclasses import dataclass

SEPARATOR = "/"
INBOX = "INBOX"
# A pattern names at most one mailbox plus wildcards: 1024 bytes is four default-length
# (255-byte) names; a server configured for longer names gets twice its name limit.
MAX_PATTERN_BYTES = 1024
# Wildcard runs (`%%%` counts once): each costs one more pass over the levels of every
# name a LIST looks at. Real clients send one or two; 32 leaves room for any sane use.
MAX_PATTERN_WILDCARDS = 32
_WILDCARDS = frozenset("*%")


@dataclass(frozen=True, slots=True)
class MailboxPattern:
    """A compiled pattern: `literals[0] gap literals[1] gap … literals[-1]`.

    `crosses[i]` tells whether the gap after `literals[i]` is `*` (True) or `%`.
    Literals between two gaps are never empty; the first and last may be.
    """

    literals: tuple[str, ...]
    crosses: tuple[bool, ...]
    is_inbox_case: bool = False

    @classmethod
    def compile(cls, reference: str, pattern: str) -> MailboxPattern:
        """RFC 9051 §6.3.9: the reference and the pattern are joined, then matched."""
        full = reference + pattern
        is_inbox_case = _is_inbox_prefix(full)
        if is_inbox_case:
            full = INBOX + full[5:]
        literals, crosses = _split(full)
        return cls(tuple(literals), tuple(crosses), is_inbox_case)

    @property
    def wildcard_runs(self) -> int:
        return len(self.crosses)

    def matches(self, name: str) -> bool:
        if self.is_inbox_case:
            if not _is_inbox_prefix(name):
                return False
            name = INBOX + name[5:]
        first = self.literals[0]
        if not self.crosses:
            return name == first
        if not name.startswith(first):
            return False
        reach = {_level_end(name, len(first)): len(first)}
        last = len(self.crosses) - 1
        for index, crosses in enumerate(self.crosses):
            literal = self.literals[index + 1]
            if index == last:
                return _reaches_end(name, literal, reach, crosses=crosses)
            reach = _advance(name, literal, reach, crosses=crosses,
                             keeps_levels=not self.crosses[index + 1])  # fmt: skip
            if not reach:
                return False
        return False  # not reached: the loop returns at its last gap


def _is_inbox_prefix(text: str) -> bool:
    # ASCII case only: "ınbox".upper() is "INBOX" too, but is not INBOX.
    head = text[:5]
    return head.isascii() and head.upper() == INBOX


def _split(full: str) -> tuple[list[str], list[bool]]:
    """Literals and the wildcard runs between them (a run holding `*` crosses levels)."""
    literals: list[str] = []
    crosses: list[bool] = []
    current: list[str] = []
    run = ""
    for char in full:
        if char in _WILDCARDS:
            run += char
            continue
        if run:
            literals.append("".join(current))
            crosses.append("*" in run)
            current, run = [], ""
        current.append(char)
    if run:
        literals.append("".join(current))
        crosses.append("*" in run)
        current = []
    literals.append("".join(current))
    return literals, crosses


def _level_end(name: str, position: int) -> int:
    """Index of the first delimiter at or after `position` (len(name) when none): the
    end of the level `position` is in. Positions with the same level end are one level."""
    found = name.find(SEPARATOR, position)
    return len(name) if found < 0 else found


def _windows(name: str, reach: dict[int, int], *, crosses: bool) -> list[tuple[int, int]]:
    """Where the next literal may start, as inclusive (low, high) ranges in name order:
    after `*`, anywhere from the earliest reached position; after `%`, from each reached
    position up to the end of its level (the delimiter itself included)."""
    if crosses:
        return [(min(reach.values()), len(name))]
    return [(reach[end], end) for end in sorted(reach)]


def _advance(name: str, literal: str, reach: dict[int, int], *, crosses: bool,
             keeps_levels: bool) -> dict[int, int]:  # fmt: skip
    """Positions reachable just after `literal`: per level when the next gap is `%`, else
    only the earliest (a `*` after it reaches everything the later ones could)."""
    found: dict[int, int] = {}
    size = len(literal)
    for low, high in _windows(name, reach, crosses=crosses):
        start = name.find(literal, low, high + size)
        while start >= 0:
            end = start + size
            level = _level_end(name, end)
            if not keeps_levels:
                return {level: end}  # windows come in name order: this is the earliest
            found.setdefault(level, end)  # starts only grow: the first is the earliest
            if not crosses:
                break  # within one level every later start ends in this same level
            start = name.find(literal, max(start + 1, level + 1 - size), high + size)
    return found


def _reaches_end(name: str, literal: str, reach: dict[int, int], *, crosses: bool) -> bool:
    """Whether `literal` can end the name after the last gap."""
    start = len(name) - len(literal)
    if start < 0 or not name.endswith(literal):
        return False
    if crosses:
        return start >= min(reach.values())
    earliest = reach.get(_level_end(name, start))
    return earliest is not None and earliest <= start


def pattern_problem(reference: str, pattern: str, *, name_limit: int = 255) -> str | None:
    """Why the joined pattern is refused (NO [LIMIT]), or None. The byte cap is
    MAX_PATTERN_BYTES, or twice `name_limit` when that is larger."""
    size = len((reference + pattern).encode("utf-8", "surrogatepass"))
    cap = max(MAX_PATTERN_BYTES, 2 * name_limit)
    if size > cap:
        return f"pattern is {size} bytes, over the limit of {cap}"
    runs = MailboxPattern.compile(reference, pattern).wildcard_runs
    if runs > MAX_PATTERN_WILDCARDS:
        return f"pattern has {runs} wildcard runs, over the limit of {MAX_PATTERN_WILDCARDS}"
    return None
