"""Comparators, match types and relational matches (RFC 5228 §2.7, RFC 5231, RFC 4790
i;ascii-numeric, draft-ietf-sieve-regex).

Owns deciding whether one value matches one key under a comparator and a match type,
and what the match variables are (RFC 5229 §3.2: `${0}` the whole value, `${1}`… each
wildcard or regex group). The evaluator loops over the values and keys.

Invariants:
- Every comparison costs steps against the script's `Budget`; a script that runs out
  stops with an error instead of holding the delivery (issue 19: "a regex must not hang
  the server"). `:matches` runs the classic one-backtrack-point glob algorithm (at most
  len(value) × len(key) steps, never exponential); `:regex` runs on RE2, whose time is
  linear in the input, with patterns bounded in length.
- `:matches` wildcards expand as little as possible, left to right (RFC 5229 §3.2: in
  `"[*] *"` against `"[acme-users] [fwd] out"`, `${1}` is "acme-users").
- i;ascii-casemap folds only ASCII letters (RFC 4790 §9.2); i;octet compares exactly.
- i;ascii-numeric (RFC 4790 §9.1): the leading digits as a number; a value without
  leading digits is positive infinity, equal only to another such value.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

import re2

MAX_REGEX_LENGTH = 1024
MAX_MATCH_VARIABLES = 10  # ${0} to ${9} (RFC 5229 §3.2 requires at least 0-9)


class BudgetExceeded(RuntimeError):
    """The script used up its steps (or another runtime limit)."""


@dataclass(slots=True)
class Budget:
    """CPU steps one evaluation may take: comparisons, characters scanned, commands."""

    remaining: int

    def spend(self, steps: int) -> None:
        self.remaining -= steps
        if self.remaining < 0:
            raise BudgetExceeded("the script took too many steps")


class MatchType(enum.Enum):
    IS = "is"
    CONTAINS = "contains"
    MATCHES = "matches"
    REGEX = "regex"
    VALUE = "value"  # RFC 5231 :value "op"
    COUNT = "count"  # RFC 5231 :count "op"


COMPARATORS = ("i;octet", "i;ascii-casemap", "i;ascii-numeric")
RELATIONS = ("gt", "ge", "lt", "le", "eq", "ne")


@dataclass(frozen=True, slots=True)
class Matcher:
    match_type: MatchType
    comparator: str = "i;ascii-casemap"
    relation: str = ""  # for VALUE and COUNT


def fold(text: str, comparator: str) -> str:
    """i;ascii-casemap folds ASCII letters only; others compare as they are."""
    if comparator == "i;ascii-casemap":
        # ASCII text: lower() is exactly the ASCII fold, and far quicker than translate.
        return text.lower() if text.isascii() else text.translate(_ASCII_LOWER)
    return text


_ASCII_LOWER = {code: code + 32 for code in range(ord("A"), ord("Z") + 1)}


# -- relational and numeric ------------------------------------------------------------
def numeric_value(text: str) -> int | None:
    """RFC 4790 §9.1: the leading digits; None stands for positive infinity."""
    end = 0
    while end < len(text) and "0" <= text[end] <= "9":
        end += 1
    return int(text[:end]) if end else None


def _order(left: str, right: str, comparator: str) -> int:
    """-1, 0, 1 as left compares to right under the comparator."""
    if comparator == "i;ascii-numeric":
        a, b = numeric_value(left), numeric_value(right)
        if a is None or b is None:
            return 0 if a is None and b is None else (1 if a is None else -1)
        return (a > b) - (a < b)
    a_text, b_text = fold(left, comparator), fold(right, comparator)
    if comparator == "i;octet":
        a_bytes, b_bytes = left.encode("utf-8", "surrogateescape"), right.encode(
            "utf-8", "surrogateescape")
        return (a_bytes > b_bytes) - (a_bytes < b_bytes)
    return (a_text > b_text) - (a_text < b_text)


def relate(left: str, right: str, relation: str, comparator: str) -> bool:
    """RFC 5231 §4: the value on the left (the message's) against the key."""
    order = _order(left, right, comparator)
    return {"gt": order > 0, "ge": order >= 0, "lt": order < 0, "le": order <= 0,
            "eq": order == 0, "ne": order != 0}[relation]  # fmt: skip


# -- one value against one key ---------------------------------------------------------
def match_one(value: str, key: str, matcher: Matcher, budget: Budget
              ) -> tuple[str, ...] | None:  # fmt: skip
    """None when `value` does not match `key`; else the match variables (`${0}` first)
    — empty for match types that set none (RFC 5229 §3.2: only :matches and :regex)."""
    kind, comparator = matcher.match_type, matcher.comparator
    budget.spend(1 + (len(value) + len(key)) // 64)
    if kind is MatchType.VALUE:
        return () if relate(value, key, matcher.relation, comparator) else None
    if kind is MatchType.IS:
        if comparator == "i;ascii-numeric":
            return () if _order(value, key, comparator) == 0 else None
        return () if fold(value, comparator) == fold(key, comparator) else None
    if kind is MatchType.CONTAINS:
        budget.spend(len(value) * max(1, len(key)) // 256)
        return () if fold(key, comparator) in fold(value, comparator) else None
    if kind is MatchType.MATCHES:
        return glob_match(fold(value, comparator), fold(key, comparator), budget, value)
    if kind is MatchType.REGEX:
        return regex_match(value, key, comparator, budget)
    raise ValueError(f"match_one does not handle {kind}")


def count_matches(count: int, keys: Sequence[str], matcher: Matcher) -> bool:
    """RFC 5231 §4.1 :count: the number of values against each key, i;ascii-numeric."""
    return any(relate(str(count), key, matcher.relation, matcher.comparator)
               for key in keys)  # fmt: skip


# -- :matches ---------------------------------------------------------------------------
def _parse_glob(pattern: str) -> list[tuple[str, str]]:
    """The pattern as ("lit", char) / ("?", "") / ("*", "") items; `\\x` is literal x."""
    items: list[tuple[str, str]] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\" and index + 1 < len(pattern):
            items.append(("lit", pattern[index + 1]))
            index += 2
            continue
        items.append((char, "") if char in "*?" else ("lit", char))
        index += 1
    return items


def glob_match(value: str, pattern: str, budget: Budget, original: str | None = None
               ) -> tuple[str, ...] | None:  # fmt: skip
    """RFC 5228 §2.7.1 :matches with the capture rule of RFC 5229 §3.2. `value` and
    `pattern` are already folded; `original` (the unfolded value) is what captures hold."""
    items = _parse_glob(pattern)
    original = value if original is None else original
    spans: list[tuple[int, int]] = [(0, 0)] * len(items)
    v = p = 0
    star_p, star_v = -1, 0
    saved_spans: list[tuple[int, int]] = []
    while v < len(value) or p < len(items):
        budget.spend(1)
        if p < len(items):
            kind, char = items[p]
            if kind == "*":
                star_p, star_v = p, v
                spans[p] = (v, v)
                saved_spans = spans[:p + 1]
                p += 1
                continue
            if v < len(value) and (kind == "?" or char == value[v]):
                spans[p] = (v, v + 1)
                p += 1
                v += 1
                continue
        if star_p < 0 or star_v >= len(value):
            return None
        # Backtrack: the last star takes one more character.
        star_v += 1
        spans[: star_p + 1] = saved_spans
        spans[star_p] = (saved_spans[star_p][0], star_v)
        p, v = star_p + 1, star_v
    groups = [original[start:end] for (kind, _), (start, end) in zip(items, spans, strict=True)
              if kind in ("*", "?")]
    return (original, *groups)[:MAX_MATCH_VARIABLES]


# -- :regex -----------------------------------------------------------------------------
_REGEX_CACHE: dict[tuple[str, bool], object] = {}


def check_regex(pattern: str) -> str | None:
    """An error message when `pattern` cannot be used (validation time), else None."""
    if len(pattern) > MAX_REGEX_LENGTH:
        return f"regular expression longer than {MAX_REGEX_LENGTH} characters"
    try:
        _compile_regex(pattern, False)
    except re2.error as error:
        detail = error.args[0] if error.args else ""
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        return f"invalid regular expression: {detail}"
    return None


def _compile_regex(pattern: str, ignore_case: bool) -> object:
    cached = _REGEX_CACHE.get((pattern, ignore_case))
    if cached is None:
        options = re2.Options()
        options.case_sensitive = not ignore_case
        options.posix_syntax = False
        options.log_errors = False
        options.max_mem = 1 << 22  # 4 MiB per program: a huge pattern fails, not swaps
        cached = re2.compile(pattern, options)
        if len(_REGEX_CACHE) > 512:
            _REGEX_CACHE.clear()
        _REGEX_CACHE[(pattern, ignore_case)] = cached
    return cached


def regex_match(value: str, pattern: str, comparator: str, budget: Budget
                ) -> tuple[str, ...] | None:  # fmt: skip
    """draft-ietf-sieve-regex: POSIX extended regular expressions (RE2 accepts them),
    unanchored; i;ascii-casemap matches ignoring case."""
    budget.spend(len(value) // 16)
    compiled = _compile_regex(pattern, comparator == "i;ascii-casemap")
    found = compiled.search(value)  # type: ignore[attr-defined]
    if found is None:
        return None
    groups = tuple(group or "" for group in found.groups())
    return (found.group(0), *groups)[:MAX_MATCH_VARIABLES]
