"""The Sieve corpus (corpus.py): every case through our interpreter, and — where Debian's
`sieve-test` is installed (dovecot-sieve; `.ci/run` installs it) — through Pigeonhole
too, with the two action lists compared."""

from __future__ import annotations

import datetime as dt

import pytest

from postroom.sieve.compile import compile_script
from postroom.sieve.evaluate import SieveContext, SieveEnvelope, evaluate
from postroom.sieve.message import SieveMessage
from tests.sieve import pigeonhole
from tests.sieve.corpus import CASES, ENVELOPE_FROM, ENVELOPE_TO, MESSAGES, Case, normalise

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)


def run_ours(case: Case) -> tuple[str, ...]:
    script = compile_script(case.script)
    context = SieveContext(
        SieveEnvelope(ENVELOPE_FROM, ENVELOPE_TO), NOW,
        environment={"name": "postroom", "domain": "example.com"},
        mailboxes=frozenset({"INBOX", "Work"}))
    return normalise(evaluate(script, SieveMessage.from_bytes(MESSAGES[case.message]),
                              context))  # fmt: skip


def test_the_corpus_is_big_enough_and_names_are_unique() -> None:
    assert len(CASES) >= 60
    assert len({case.name for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_case(case: Case) -> None:
    assert run_ours(case) == case.expected


COMPARABLE = [case for case in CASES if case.compare]


@pytest.mark.skipif(not pigeonhole.available(), reason="Pigeonhole's sieve-test is not "
                    "installed (Debian package dovecot-sieve)")  # fmt: skip
@pytest.mark.parametrize("case", COMPARABLE, ids=[case.name for case in COMPARABLE])
def test_pigeonhole_agrees(case: Case) -> None:
    theirs = pigeonhole.run_sieve_test(case.script, MESSAGES[case.message],
                                       sender=ENVELOPE_FROM, recipient=ENVELOPE_TO)
    assert theirs == run_ours(case)
