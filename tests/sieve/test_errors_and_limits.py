"""Broken scripts fail with the position Pigeonhole names; hostile scripts hit limits,
never hang; vacation replies are suppressed where RFC 5230 §4.5 and RFC 3834 say."""

from __future__ import annotations

import datetime as dt

import pytest

from postroom.sieve.actions import Vacation
from postroom.sieve.compile import MAX_SCRIPT_SIZE, compile_script
from postroom.sieve.evaluate import Limits, SieveContext, SieveEnvelope, evaluate
from postroom.sieve.lexer import SieveSyntaxError
from postroom.sieve.message import SieveMessage
from postroom.sieve.parser import MAX_NESTING
from postroom.sieve.vacation import render_reply, suppression_reason
from tests.sieve.corpus import AUTOREPLY, LIST, PLAIN

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
CONTEXT = SieveContext(SieveEnvelope("joe@example.org", "me@example.com"), NOW)


@pytest.mark.parametrize(("script", "line", "column", "words"), [
    ('fileinto "x";', 1, 1, 'requires the "fileinto" extension'),
    ('require "fileinto";\nfileinto\n  :copy "x";', 3, 3, 'requires the "copy" extension'),
    ('require "nosuch";', 1, 9, "unknown Sieve capability 'nosuch'"),
    ("keep;\nfoo;", 2, 1, "unknown command 'foo'"),
    ('if header :is "a" "b" {\n  keep;\n', 3, 1, "missing '}'"),
    ("if true { keep; }\nelse keep;", 2, 1, "else command requires a block"),
    ('redirect "x" "y";', 1, 1, "expects 1 positional argument(s), found 2"),
    ('if size 10 { keep; }', 1, 4, "size test requires :over or :under"),
    ('if header :contains :matches "a" "b" { keep; }', 1, 21, "cannot be used together"),
    ('require "relational";\nif header :value "xx" "a" "b" { keep; }', 2, 4,
     "invalid relational match"),
    ('if header :comparator "i;nosuch" "a" "b" { keep; }', 1, 4, "unknown comparator"),
    ('if header :comparator "i;ascii-numeric" "a" "1" { keep; }', 1, 4,
     'requires the "comparator-i;ascii-numeric" extension'),
    ('keep;\nrequire "fileinto";', 2, 1, "require commands can only be placed"),
    ('elsif true { keep; }', 1, 1, "must follow an if or elsif"),
    ('/* unterminated', 1, 1, "unterminated comment"),
    ('keep "x;', 1, 6, "unterminated string"),
    ('require "vacation";\nvacation text: x\n', 2, 16, "expected a line break"),
    ('if header :is "a" 99999999999999999999G { keep; }', 1, 19, "number is too large"),
    ('require "date";\nif date "date" "century" "20" { keep; }', 2, 4, "unknown date part"),
    ('require "regex";\nif header :regex "s" "(" { keep; }', 2, 4,
     "invalid regular expression"),
])
def test_errors_name_their_position(script: str, line: int, column: int, words: str) -> None:
    with pytest.raises(SieveSyntaxError) as raised:
        compile_script(script)
    assert (raised.value.line, raised.value.column) == (line, column), str(raised.value)
    assert words in str(raised.value)
    assert str(raised.value).startswith(f"line {line}, column {column}: error: ")


def test_script_size_is_bounded() -> None:
    with pytest.raises(SieveSyntaxError, match="larger than"):
        compile_script("#" * (MAX_SCRIPT_SIZE + 1))


def test_nesting_is_bounded() -> None:
    deep = "if true { " * (MAX_NESTING + 1) + "keep;" + " }" * (MAX_NESTING + 1)
    with pytest.raises(SieveSyntaxError, match="nested more than"):
        compile_script(deep)
    tests = "if " + "not " * (MAX_NESTING + 1) + "true { keep; }"
    with pytest.raises(SieveSyntaxError, match="nested more than"):
        compile_script(tests)


def test_string_lists_are_bounded() -> None:
    many = ", ".join(f'"{n}"' for n in range(2000))
    with pytest.raises(SieveSyntaxError, match="more than"):
        compile_script(f'if header :is "subject" [{many}] {{ keep; }}')


def test_a_costly_glob_runs_out_of_steps_and_keeps() -> None:
    raw = b"Subject: " + b"a" * 4000 + b"\r\n\r\nx\r\n"
    pattern = "*" + "a" * 500 + "b"  # at most len(value) × len(pattern) steps
    script = compile_script(f'if header :matches "subject" "{pattern}" {{ discard; }}')
    context = SieveContext(CONTEXT.envelope, NOW, limits=Limits(steps=100_000))
    result = evaluate(script, SieveMessage.from_bytes(raw), context)
    assert result.error and result.keeps and not result.actions


def test_a_catastrophic_regex_is_linear_on_re2() -> None:
    raw = b"Subject: " + b"a" * 30 + b"!\r\n\r\nx\r\n"
    script = compile_script('require "regex"; if header :regex "subject" "^(a+)+$" '
                            "{ discard; }")  # fmt: skip
    result = evaluate(script, SieveMessage.from_bytes(raw), CONTEXT)
    assert not result.error and result.implicit_keep


def test_too_many_actions_is_an_error() -> None:
    body = "".join(f'fileinto "f{n}";' for n in range(40))
    result = evaluate(compile_script('require "fileinto";' + body),
                      SieveMessage.from_bytes(PLAIN), CONTEXT)  # fmt: skip
    assert "more than 32 actions" in result.error and result.keeps


def test_variables_are_bounded_in_number_and_size() -> None:
    sets = "".join(f'set "v{n}" "x";' for n in range(300))
    result = evaluate(compile_script('require "variables";' + sets),
                      SieveMessage.from_bytes(PLAIN), CONTEXT)  # fmt: skip
    assert "more than 255 variables" in result.error
    big = compile_script('require ["variables", "fileinto"]; set "a" "' + "x" * 5000
                         + '"; set :length "n" "${a}"; fileinto "${n}";')  # fmt: skip
    result = evaluate(big, SieveMessage.from_bytes(PLAIN), CONTEXT)
    assert [getattr(action, "mailbox", "") for action in result.actions] == ["4096"]


def test_includes_nest_only_so_deep() -> None:
    looping = compile_script('require "include"; include "self";')
    context = SieveContext(CONTEXT.envelope, NOW, include=lambda location, name: looping)
    result = evaluate(looping, SieveMessage.from_bytes(PLAIN), context)
    assert "nested more than" in result.error


def test_include_shares_globals_and_return_ends_only_the_include() -> None:
    child = compile_script('require ["include", "variables"]; global "box"; '
                           'set "box" "FromChild"; return; set "box" "never";')  # fmt: skip
    parent = compile_script('require ["include", "variables", "fileinto"]; global "box"; '
                            'include "child"; fileinto "${box}";')  # fmt: skip
    context = SieveContext(CONTEXT.envelope, NOW, include=lambda location, name: child)
    result = evaluate(parent, SieveMessage.from_bytes(PLAIN), context)
    assert [getattr(action, "mailbox", "") for action in result.actions] == ["FromChild"]


def _vacation() -> Vacation:
    return Vacation("away", "h", 86400)


def test_vacation_replies_to_a_personal_message() -> None:
    reason = suppression_reason(_vacation(), SieveMessage.from_bytes(PLAIN),
                                "joe@example.org", ["me@example.com"])  # fmt: skip
    assert reason == ""


@pytest.mark.parametrize(("raw", "sender", "own", "why"), [
    (LIST, "announce@lists.example.org", ["acme-users@lists.example.org"], "Precedence"),
    (AUTOREPLY, "robot@example.net", ["me@example.com"], "Auto-Submitted"),
    (PLAIN, "", ["me@example.com"], "null sender"),
    (PLAIN, "joe@example.org", ["nobody@example.com"], "recipient field"),
    (PLAIN, "mailer-daemon@example.org", ["me@example.com"], "automatic sender"),
    (PLAIN, "me@example.com", ["me@example.com"], "the sender is the user"),
])
def test_vacation_is_suppressed(raw: bytes, sender: str, own: list[str], why: str) -> None:
    assert why in suppression_reason(_vacation(), SieveMessage.from_bytes(raw), sender, own)


def test_vacation_reply_is_marked_auto_replied_and_threaded() -> None:
    reply = render_reply(Vacation("Back on Monday.", "h", 86400, subject="Away"),
                         SieveMessage.from_bytes(PLAIN), sender="joe@example.org",
                         from_address="me@example.com", message_id="<r@example.com>",
                         date="Mon, 07 Dec 2026 12:00:00 +0000")  # fmt: skip
    assert b"Auto-Submitted: auto-replied" in reply
    assert b"In-Reply-To: <plain-1@example.org>" in reply
    assert b"Subject: Away\r\n" in reply and reply.endswith(b"Back on Monday.\r\n")
