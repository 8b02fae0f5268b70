"""LIST patterns (RFC 9051 §6.3.9) and mailbox-name limits: imap/wire/patterns.py.

Table tests for the semantics, a timing-free check that hostile patterns stay cheap
(searches counted, not seconds), and a hypothesis comparison with a plain regex reference
on short inputs (where backtracking costs nothing)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postroom.accounts.mailboxlimits import MailboxLimits, name_problem
from postroom.imap.wire import patterns
from postroom.imap.wire.patterns import (
    MAX_PATTERN_WILDCARDS,
    MailboxPattern,
    pattern_problem,
)


def reference_matches(full: str, name: str) -> bool:
    """The pre-issue-25 regex translation: right, but exponential on hostile input."""
    pieces = [".*" if ch == "*" else "[^/]*" if ch == "%" else re.escape(ch) for ch in full]
    regex = "".join(pieces)
    if full[:5].isascii() and full[:5].upper() == "INBOX":
        regex = "(?i:INBOX)" + "".join(pieces[5:])
    return re.fullmatch(regex, name, re.DOTALL) is not None


def matches(pattern: str, name: str, reference: str = "") -> bool:
    return MailboxPattern.compile(reference, pattern).matches(name)


@pytest.mark.parametrize(("pattern", "name", "expected"), [
    ("*", "", True),
    ("*", "a/b/c", True),
    ("%", "a", True),
    ("%", "a/b", False),
    ("%/%", "a/b", True),
    ("a/%", "a/b/c", False),
    ("a/*", "a/b/c", True),
    ("a*", "a", True),
    ("a%b", "a/b", False),
    ("a*b%c", "ab/xbc", True),  # the "b" that works is not the first one
    ("a%b*c", "ab/c", True),
    ("%%%%x", "box", True),
    ("%%%%x", "a/box", False),
    ("%*%", "a/b", True),
    ("Lists/%", "Lists/python", True),
    ("Lists/%", "lists/python", False),  # names other than INBOX are case-sensitive
    ("", "", True),
    ("", "a", False),
    ("abc", "abc", True),
    ("abc", "abcd", False),
    ("%/", "a/", True),
    ("*/", "a/b", False),
])  # fmt: skip
def test_wildcards(pattern: str, name: str, expected: bool) -> None:
    assert matches(pattern, name) is expected
    assert reference_matches(pattern, name) is expected


@pytest.mark.parametrize(("pattern", "name", "expected"), [
    ("inbox", "INBOX", True),
    ("InBoX", "INBOX", True),
    ("inbox/%", "INBOX/Sub", True),
    ("inbox/%", "INBOX/sub", True),
    ("INBOX/sub", "INBOX/Sub", False),  # children keep their case
    ("inbox*", "Inbox.old", True),
    ("ınbox", "INBOX", False),  # dotless i: "ınbox".upper() is "INBOX", but not in ASCII
    ("INBOX", "ınbox", False),
    ("%", "INBOX", True),
    ("i%", "INBOX", False),
])  # fmt: skip
def test_inbox_is_case_insensitive(pattern: str, name: str, expected: bool) -> None:
    assert matches(pattern, name) is expected


def test_reference_is_joined() -> None:
    assert matches("%", "Lists/python", reference="Lists/")
    assert not matches("%", "Lists/python/3", reference="Lists/")
    assert matches("box", "INBOX", reference="in")


def test_runs_of_wildcards_collapse() -> None:
    compiled = MailboxPattern.compile("", "%" * 60 + "x")
    assert compiled.literals == ("", "x") and compiled.crosses == (False,)
    compiled = MailboxPattern.compile("", "a%*%b**c")
    assert compiled.literals == ("a", "b", "c") and compiled.crosses == (True, True)


def test_hostile_patterns_cost_few_searches(monkeypatch: pytest.MonkeyPatch) -> None:
    """The matcher's work is bounded by literals × levels, not by backtracking: count the
    searches over a long name with many levels."""
    calls = 0
    real_level_end = patterns._level_end

    def counting(name: str, position: int) -> int:
        nonlocal calls
        calls += 1
        return real_level_end(name, position)

    monkeypatch.setattr(patterns, "_level_end", counting)
    name = "/".join(["a" * 20] * 200)  # 200 levels, all alike
    hostile = MailboxPattern.compile("", "*a%" * 15 + "b")
    assert not hostile.matches(name)
    assert calls <= 16 * 201 + 1
    calls = 0
    assert not MailboxPattern.compile("", "%" * 60 + "x").matches("a" * 10_000)
    assert calls <= 2


def test_pattern_caps() -> None:
    assert pattern_problem("", "*") is None
    assert pattern_problem("", "a" * 1024) is None
    assert "bytes" in (pattern_problem("", "a" * 1025) or "")
    assert "bytes" in (pattern_problem("", "é" * 513) or "")  # UTF-8 bytes count
    assert pattern_problem("", "a" * 1500, name_limit=1000) is None  # twice the name limit
    assert pattern_problem("", "%a" * MAX_PATTERN_WILDCARDS) is None
    assert "wildcard" in (pattern_problem("", "%a" * (MAX_PATTERN_WILDCARDS + 1)) or "")
    assert pattern_problem("", "%" * 500) is None  # one run


def test_name_limits() -> None:
    limits = MailboxLimits(name_length=20, depth=3, mailboxes=10)
    assert name_problem("a/b/c", limits) is None
    assert "levels" in (name_problem("a/b/c/d", limits) or "")
    assert name_problem("a" * 20, limits) is None
    assert "bytes" in (name_problem("a" * 21, limits) or "")
    assert "bytes" in (name_problem("é" * 11, limits) or "")  # 22 UTF-8 bytes
    assert name_problem("\udc80", limits) is None  # a lone surrogate does not raise


_CHARS = st.sampled_from(["a", "b", "/", "*", "%", "I", "n", "B", "o", "X", "x", "é"])
_NAME_CHARS = st.sampled_from(["a", "b", "/", "I", "N", "n", "B", "o", "X", "x", "é"])


_INBOXES = st.sampled_from(["INBOX", "inbox", "InBoX", "INBOX/", "inbox/"])
_PATTERNS = st.one_of(st.text(_CHARS, max_size=8),
                      st.builds(str.__add__, _INBOXES, st.text(_CHARS, max_size=5)))
_NAMES = st.one_of(st.text(_NAME_CHARS, max_size=10),
                   st.builds(str.__add__, _INBOXES, st.text(_NAME_CHARS, max_size=6)))


@settings(max_examples=500, deadline=None)
@given(reference=st.text(_CHARS, max_size=4), pattern=_PATTERNS, name=_NAMES)
def test_agrees_with_the_regex_reference(reference: str, pattern: str, name: str) -> None:
    compiled = MailboxPattern.compile(reference, pattern)
    assert compiled.matches(name) is reference_matches(reference + pattern, name)


@settings(max_examples=300, deadline=None)
@given(pattern=st.text(max_size=40), name=st.text(max_size=40))
def test_never_raises(pattern: str, name: str) -> None:
    compiled = MailboxPattern.compile("", pattern)
    assert compiled.matches(name) in (True, False)
    assert compiled.matches(pattern) in (True, False)
    pattern_problem("", pattern)
    name_problem(name, MailboxLimits())


@settings(max_examples=200, deadline=None)
@given(name=st.text(_NAME_CHARS, max_size=12))
def test_a_literal_pattern_matches_itself(name: str) -> None:
    # Without wildcards a pattern is a name: it matches that name (INBOX in any case).
    assert matches(name, name)
