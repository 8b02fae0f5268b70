"""The self-service's managed Sieve script (accounts/mailrules.py, issue 21): what users
type becomes quoted strings only, the script compiles with postroom's Sieve compiler,
and its settings read back exactly."""

from __future__ import annotations

import pytest

from postroom.accounts.mailrules import (
    Forwarding,
    MailRules,
    Vacation,
    check_forwarding,
    check_vacation,
    parse_settings,
    render_script,
)
from postroom.errors import BadSyntax
from postroom.sieve.compile import compile_script

HOSTILE = 'He said "hi" \\ then } ; stop; ${var} \\u{41} # not a comment'


def test_hostile_text_stays_text_and_compiles() -> None:
    rules = MailRules(Vacation(True, "2026-12-20", "2027-01-02", HOSTILE, HOSTILE + "\nline 2",
                               3), Forwarding("copy@remote.example", True), "mine")
    text = render_script(rules)
    script = compile_script(text)
    assert {include.name for include in script.includes} == {"mine"}
    assert parse_settings(text) == rules


@pytest.mark.parametrize("rules", [
    MailRules(Vacation(True, "", "", "", "Away.", 7)),
    MailRules(forwarding=Forwarding("a@b.example", False)),
    MailRules(Vacation(True, "2026-12-01", "", "Away", "Away.", 1), wraps="own script"),
])
def test_every_combination_compiles_and_reads_back(rules: MailRules) -> None:
    text = render_script(rules)
    compile_script(text)
    assert parse_settings(text) == rules


def test_a_script_not_written_by_us_reads_as_no_settings() -> None:
    assert parse_settings('require "vacation"; vacation "x";') == MailRules()
    assert parse_settings("# postroom-settings: {not json\nkeep;") == MailRules()


@pytest.mark.parametrize(("args", "problem"), [
    ((True, "2026-13-01", "", "", "x", 7), "start date"),
    ((True, "", "", "a\nb", "x", 7), "subject"),
    ((True, "", "", "", "x\0", 7), "message"),
    ((True, "", "", "", "x", 0), "days"),
])
def test_vacation_checks(args: tuple[bool, str, str, str, str, int], problem: str) -> None:
    with pytest.raises(BadSyntax, match=problem):
        check_vacation(*args)


def test_forwarding_checks() -> None:
    assert check_forwarding("  Friend@Remote.Example ", True, "me@example.test").address == (
        "friend@remote.example")
    assert check_forwarding("", True, "me@example.test").address == ""
    for bad in ("me@example.test", "nobody", "a%b@c.example"):
        with pytest.raises(BadSyntax):
            check_forwarding(bad, True, "me@example.test")
