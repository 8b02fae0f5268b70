"""Base subject extraction (RFC 5256 §2.1) and the sort facts built on it (RFC 5256 §3,
RFC 5957): table tests, a step-by-step reference implementation compared by hypothesis,
and linear time on hostile subjects."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postroom.mail.basesubject import base_subject
from postroom.mail.envelope import render_envelope
from postroom.mail.sortkeys import casemap, sort_facts


@pytest.mark.parametrize(("subject", "base"), [
    ("hello", "hello"),
    ("Re: hello", "hello"),
    ("RE: Re: re: hello", "hello"),
    ("Fwd: hello", "hello"),
    ("FW: hello", "hello"),
    ("re:hello", "hello"),
    ("Re [2]: hello", "hello"),
    ("re[tag]: hello", "hello"),
    ("[list] Re: hello", "hello"),
    ("Re: [list] hello", "hello"),
    ("[list] hello", "hello"),
    ("[list]", "[list]"),
    ("[a][b]", "[b]"),
    ("[a] [b] ", "[b]"),
    ("hello (fwd)", "hello"),
    ("hello (fwd) (FWD)  ", "hello"),
    ("[fwd: hello]", "hello"),
    ("[Fwd: Re: [x] hello (fwd)]", "hello"),
    ("Re: [fwd: hello]", "hello"),
    ("  hello\t  world  ", "hello world"),
    ("hello\r\n world", "hello world"),
    ("re:", ""),
    ("Re hello", "Re hello"),
    ("Reply: hello", "Reply: hello"),
    ("fwdx: hello", "fwdx: hello"),
    ("[fwd: hello", "[fwd: hello"),
    ("", ""),
])  # fmt: skip
def test_base_subject(subject: str, base: str) -> None:
    assert base_subject(subject) == base


# -- a reference: RFC 5256 §2.1 step by step, slicing strings (quadratic, small inputs) -----
_BLOB = r"\[[^\[\]]*\] *"
_REF_LEADER = re.compile(rf"(?:{_BLOB})*(?:re|fwd?) *(?:{_BLOB})?:| +", re.IGNORECASE)
_REF_BLOB = re.compile(_BLOB)


def _reference(text: str) -> str:
    text = re.sub(r"[ \t\r\n]+", " ", text)
    while True:
        while True:  # step 2
            stripped = text.rstrip(" ")
            if stripped.lower().endswith("(fwd)"):
                stripped = stripped[:-5]
            if stripped == text:
                break
            text = stripped
        while True:  # steps 3-5
            match = _REF_LEADER.match(text)
            if match and match.end() > 0:
                text = text[match.end():]
                continue
            blob = _REF_BLOB.match(text)
            if blob and text[blob.end():]:
                text = text[blob.end():]
                continue
            break
        if text.lower().startswith("[fwd:") and text.endswith("]"):  # step 6
            text = text[5:-1]
            continue
        return text


_PIECES = st.sampled_from(["re", "Re", "fw", "FWD", "fwd", ":", " ", "\t", "[", "]", "[x]",
                           "[fwd:", "(fwd)", "a", "b", "hello"])  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.lists(_PIECES, max_size=14).map("".join))
def test_base_subject_agrees_with_the_step_by_step_reference(subject: str) -> None:
    assert base_subject(subject) == _reference(subject)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_base_subject_never_raises_and_is_stable(subject: str) -> None:
    once = base_subject(subject)
    assert base_subject(once) == once


@pytest.mark.parametrize("subject", [
    "re:" * 60_000 + "x", "[a]" * 60_000 + "x", "[a]" * 60_000, "(fwd)" * 60_000,
    "[fwd:" * 30_000 + "x" + "]" * 30_000, "re [x]" * 50_000,
])  # fmt: skip
def test_base_subject_is_linear_on_hostile_subjects(subject: str) -> None:
    began = time.monotonic()
    base_subject(subject)
    assert time.monotonic() - began < 1.0


# -- sort facts -------------------------------------------------------------------------------
def test_casemap_folds_ascii_only() -> None:
    assert casemap("abcXYZ") == b"ABCXYZ"
    assert casemap("é") == "é".encode()  # i;ascii-casemap leaves non-ASCII octets alone
    assert casemap("b") > casemap("A")


def test_sort_facts_from_an_envelope() -> None:
    header = (b"From: =?utf-8?q?J=C3=B6rg?= <JOERG@Example.org>, b@x\r\n"
              b"To: undisclosed:;, <Bob@b.example>\r\n"
              b"Cc: (c) carol (c) @ x.example\r\n"
              b"Subject: Re: [list] =?utf-8?q?Gr=C3=BC=C3=9Fe?= (fwd)\r\n"
              b"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n\r\n")  # fmt: skip
    facts = sort_facts(render_envelope(header))
    assert facts.from_mailbox == b"JOERG"
    assert facts.to_mailbox == b"BOB"  # the empty group is no mailbox
    assert facts.cc_mailbox == b"CAROL"
    assert facts.display_from == casemap("Jörg")
    assert facts.display_to == b"BOB@B.EXAMPLE"  # no display name: the address
    assert facts.subject == casemap("Grüße")
    assert facts.sent == 760686745.0  # 1994-02-08 05:52:25 UTC


def test_sort_facts_of_a_bare_header() -> None:
    facts = sort_facts(render_envelope(b"Date: garbage\r\n\r\n"))
    assert facts.sent is None
    assert facts.subject == facts.from_mailbox == facts.display_to == b""
