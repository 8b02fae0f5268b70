"""The per-account learning junk filter: tokens and arithmetic (table and property tests),
the store's counts (run on both backends), and the whole loop over real sockets: an
account that moved 20 spam and 20 ham messages over IMAP gets new spam filed into Junk
and new good mail into INBOX; `postroom junk train` and `stats`."""

from __future__ import annotations

import datetime as dt
import imaplib
import mailbox
import random
import re
import smtplib
import ssl
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from postroom.cli import app as cli_app
from postroom.delivery.transit import ClientInfo, ReceivedMessage
from postroom.junk.classifier import spam_probability, token_probability
from postroom.junk.service import JunkFilter, JunkScorer, judgement, symbols_for
from postroom.junk.tokens import MAX_TOKENS, tokenize
from postroom.mail.esmtp import MailParams
from postroom.mailauth.spf import SpfResult, SpfVerdict
from postroom.runtime import Runtime
from postroom.store.api import Mailbox, NewMessage, SpecialUse
from postroom.store.junk_api import JunkTotals
from tests.filterd.conftest import filter_config
from tests.support.server import AppThread

USER = "user@example.test"
PASSWORD = "correct horse battery"

SPAM_WORDS = ["viagra", "pills", "casino", "lottery", "winner", "prize", "claim", "cheap",
              "offer", "discount", "bitcoin", "investment", "guaranteed", "urgent",
              "refinance", "pharmacy", "jackpot", "bonus", "credit"]
HAM_WORDS = ["meeting", "agenda", "project", "report", "budget", "review", "lunch", "team",
             "schedule", "minutes", "draft", "quarterly", "deadline", "colleague", "conference",
             "invoice", "roadmap", "retro", "sprint"]
COMMON = ["hello", "regards", "thanks", "please", "today", "about", "your", "with"]


def sample(words: list[str], rng: random.Random, subject: str, sender: str) -> bytes:
    body = " ".join(rng.sample(words, 8) + rng.sample(COMMON, 4))
    link = "http://deals.spam.example/x" if words is SPAM_WORDS else "https://wiki.corp.example"
    return (f"From: {sender}\r\nTo: {USER}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{rng.random()}@x>\r\n\r\n{body}\r\n{link}\r\n").encode()


def spam(rng: random.Random) -> bytes:
    return sample(SPAM_WORDS, rng, "You are a winner " + rng.choice(SPAM_WORDS),
                  f"promo{rng.randrange(1000)}@deals.example")


def ham(rng: random.Random) -> bytes:
    return sample(HAM_WORDS, rng, "Re: " + rng.choice(HAM_WORDS), "alice@colleague.example")


# -- tokens and arithmetic -------------------------------------------------------------------


def test_tokens_of_a_message() -> None:
    tokens = tokenize(b"From: Alice <Alice@Example.ORG>\r\nSubject: Quarterly budget\r\n"
                      b"Content-Type: text/html\r\n\r\n<p>Visit <a href='https://Shop.Example"
                      b".com/x'>our shop</a> today</p>\r\n")
    assert {"from:alice@example.org", "fromdomain:example.org", "s:quarterly", "s:budget",
            "url:shop.example.com", "visit", "shop", "today", "h:type:text/html"} <= tokens
    assert "href" not in tokens and "<p>" not in tokens


def test_tokens_are_bounded() -> None:
    words = " ".join(f"word{i:06d}" for i in range(20000)).encode()
    assert len(tokenize(b"Subject: x\r\n\r\n" + words)) <= MAX_TOKENS


def test_encoded_text_is_decoded_before_tokenising() -> None:
    tokens = tokenize(b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nContent-Type: text/plain; "
                      b"charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                      b"bGF0dGUgbWFjY2hpYXRv\r\n")
    assert {"s:grüße", "latte", "macchiato"} <= tokens


def test_probabilities() -> None:
    assert token_probability(0, 0, 10, 10) == 0.5
    assert token_probability(10, 0, 10, 10) > 0.9
    assert token_probability(0, 10, 10, 10) < 0.1
    assert token_probability(1, 0, 10, 10) < token_probability(10, 0, 10, 10)  # rare: nearer
    assert spam_probability([0.99] * 20) > 0.99
    assert spam_probability([0.01] * 20) < 0.01
    assert spam_probability([]) == 0.5
    assert spam_probability([0.5, 0.55]) == 0.5  # nothing interesting


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0.01, max_value=0.99), max_size=300))
def test_the_combined_probability_is_a_probability(probabilities: list[float]) -> None:
    assert 0.0 <= spam_probability(probabilities) <= 1.0


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=4000))
def test_any_bytes_tokenise(data: bytes) -> None:
    assert len(tokenize(data)) <= MAX_TOKENS


def box(name: str, use: SpecialUse | None = None) -> Mailbox:
    return Mailbox(1, 1, name, 1, 1, 1, use, True)


@pytest.mark.parametrize(("source", "target", "expected"), [
    (box("INBOX"), box("Junk", SpecialUse.JUNK), True),
    (box("Archive"), box("spam-folder", SpecialUse.JUNK), True),
    (box("Junk", SpecialUse.JUNK), box("INBOX"), False),
    (box("junk"), box("Archive"), False),
    (box("Junk", SpecialUse.JUNK), box("Trash", SpecialUse.TRASH), None),
    (box("INBOX"), box("Archive"), None),
    (box("Junk", SpecialUse.JUNK), box("Junk", SpecialUse.JUNK), None)])
def test_what_a_move_says(source: Mailbox, target: Mailbox, expected: bool | None) -> None:
    assert judgement(source, target) is expected


def test_symbols_wait_for_enough_training() -> None:
    assert symbols_for(0.999, JunkTotals(4, 50)) == ()
    (spam_symbol,) = symbols_for(0.999, JunkTotals(5, 5))
    assert (spam_symbol.name, spam_symbol.score) == ("BAYES_SPAM", 7.0)
    (ham_symbol,) = symbols_for(0.001, JunkTotals(5, 5))
    assert ham_symbol.name == "BAYES_HAM" and ham_symbol.score < 0
    assert symbols_for(0.5, JunkTotals(5, 5)) == ()


# -- the store's counts (both backends) ------------------------------------------------------


async def test_training_counts_once_and_rejudging_moves(runtime: Runtime) -> None:
    store = runtime.store
    account = await runtime.accounts.add_account(USER, PASSWORD)
    junk = JunkFilter(store, runtime.blobs)
    message = spam(random.Random(1))
    assert await junk.train_message(account.id, message, is_spam=True)
    assert not await junk.train_message(account.id, message, is_spam=True)
    totals = await store.junk_stats(account.id)
    assert (totals.spam, totals.ham) == (1, 0) and totals.tokens > 5
    assert await store.junk_totals(account.id) == JunkTotals(1, 0)
    counts = await store.junk_token_counts(account.id, ["viagra", "never-seen"])
    assert "never-seen" not in counts
    assert await junk.train_message(account.id, message, is_spam=False)  # re-judged
    totals = await store.junk_totals(account.id)
    assert (totals.spam, totals.ham) == (0, 1)
    counts = await store.junk_token_counts(account.id, sorted(tokenize(message)))
    assert all((count.spam, count.ham) == (0, 1) for count in counts.values())


async def test_known_senders(runtime: Runtime) -> None:
    store = runtime.store
    account = await runtime.accounts.add_account(USER, PASSWORD)
    await JunkFilter(store, runtime.blobs).note_sent(account.id, ["Bob@Friend.example"])
    assert await store.junk_known_senders(account.id, ["bob@friend.example", "x@y.z"]) == {
        "bob@friend.example"}
    assert (await store.junk_stats(account.id)).senders == 1


# -- over IMAP and SMTP ----------------------------------------------------------------------


def append_all(imap: imaplib.IMAP4, mailbox_name: str, messages: list[bytes]) -> None:
    for data in messages:
        typ, _ = imap.append(mailbox_name, "", None, data)
        assert typ == "OK"


def test_moves_over_imap_teach_the_account(tmp_path: Path, server_cert: tuple[Path, Path],
                                           client_tls: ssl.SSLContext) -> None:
    rng = random.Random(18)
    with AppThread(filter_config(tmp_path, server_cert)) as server:
        server.add_account(USER, PASSWORD)
        imap = imaplib.IMAP4("127.0.0.1", server.port("imap"), timeout=20)
        try:
            imap.starttls(client_tls)
            imap.login(USER, PASSWORD)
            append_all(imap, "INBOX", [spam(rng) for _ in range(20)])
            append_all(imap, "Junk", [ham(rng) for _ in range(20)])
            imap.select("INBOX")
            assert imap.uid("COPY", "1:10", "Junk")[0] == "OK"  # copied into Junk: spam
            assert imap.uid("MOVE", "11:20", "Junk")[0] == "OK"  # moved into Junk: spam
            imap.select("Junk")
            ham_uids = ",".join(str(uid) for uid in range(1, 21))
            assert imap.uid("MOVE", ham_uids, "INBOX")[0] == "OK"  # out of Junk: ham
        finally:
            imap.logout()
        account = server.call(server.runtime.store.get_account(USER))
        assert account is not None
        totals = server.call(server.runtime.store.junk_totals(account.id))
        assert (totals.spam, totals.ham) == (20, 20)
        inbox_before = len(server.inbox_messages(USER))
        junk_before = len(server.inbox_messages(USER, "Junk"))
        with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=20) as client:
            client.sendmail("promo@deals.example", [USER], spam(rng))
            client.sendmail("alice@colleague.example", [USER], ham(rng))
        junk_after = server.inbox_messages(USER, "Junk")
        inbox_after = server.inbox_messages(USER)
    assert len(junk_after) == junk_before + 1 and len(inbox_after) == inbox_before + 1
    assert b"You are a winner" in junk_after[-1] and b"BAYES_SPAM" in junk_after[-1]
    assert b"Subject: Re: " in inbox_after[-1]


async def test_the_scorer_needs_a_trained_account(runtime: Runtime) -> None:
    account = await runtime.accounts.add_account(USER, PASSWORD)
    scorer = JunkScorer(runtime.store)
    assert await scorer.score(account.id, received(spam(random.Random(2)))) == ()
    junk = JunkFilter(runtime.store, runtime.blobs)
    rng = random.Random(3)
    for _ in range(5):
        await junk.train_message(account.id, spam(rng), is_spam=True)
        await junk.train_message(account.id, ham(rng), is_spam=False)
    (symbol,) = await scorer.score(account.id, received(spam(rng)))
    assert symbol.name == "BAYES_SPAM"
    (symbol,) = await scorer.score(account.id, received(ham(rng)))
    assert symbol.name == "BAYES_HAM"


def received(data: bytes) -> ReceivedMessage:
    client = ClientInfo("192.0.2.1", "client.example", is_esmtp=True)
    return ReceivedMessage(f"Q{len(data)}{data[-20:].hex()}", client, "a@remote.example",
                           MailParams(), [], Path("/nonexistent"), len(data),
                           dt.datetime.now(dt.UTC), body=data)


# -- the CLI ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


def postroom(env_file: Path, *args: str) -> Ran:
    """The CLI in this process (a subprocess per verb costs seconds of imports)."""
    result = CliRunner().invoke(cli_app, ["--config", str(env_file), *args])
    return Ran(result.exit_code, result.stdout, result.stderr)


def test_cli_trains_from_maildir_and_mbox(tmp_path: Path) -> None:
    env = tmp_path / "postroom.env"
    env.write_text(f"DATA_DIR={tmp_path / 'data'}\nOVERRIDE_HOSTNAME=mail.example.test\n")
    rng = random.Random(7)
    maildir = mailbox.Maildir(tmp_path / "spam-maildir", create=True)
    for _ in range(3):
        maildir.add(spam(rng))
    mbox_path = tmp_path / "ham.mbox"
    hams = mailbox.mbox(mbox_path, create=True)
    for _ in range(4):
        hams.add(ham(rng))
    hams.close()
    assert postroom(env, "email", "add", USER, PASSWORD).returncode == 0
    result = postroom(env, "junk", "train", USER, "--spam", str(tmp_path / "spam-maildir"))
    assert result.returncode == 0, result.stderr
    assert "3 of 3 messages trained as spam" in result.stdout
    result = postroom(env, "junk", "train", USER, "--ham", str(mbox_path))
    assert "4 of 4 messages trained as ham" in result.stdout
    again = postroom(env, "junk", "train", USER, "--ham", str(mbox_path))
    assert "0 of 4 messages trained as ham" in again.stdout  # counted once
    result = postroom(env, "junk", "stats", USER)
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(rf"{re.escape(USER)}\t3\t4\t\d+\t0\n", result.stdout), result.stdout
    both = postroom(env, "junk", "train", USER, "--spam", "x", "--ham", "y")
    assert both.returncode == 1 and "give one of" in both.stderr
    nobody = postroom(env, "junk", "stats", "nobody@example.test")
    assert nobody.returncode == 1 and "no account" in nobody.stderr


# -- what the user sends -------------------------------------------------------------------


def test_recipients_of_sent_mail_become_known_senders(
        tmp_path: Path, server_cert: tuple[Path, Path], client_tls: ssl.SSLContext) -> None:
    friend = "friend@example.test"
    with AppThread(filter_config(tmp_path, server_cert)) as server:
        server.add_account(USER, PASSWORD)
        server.add_account(friend, PASSWORD)
        with smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=20) as client:
            client.starttls(context=client_tls)
            client.login(USER, PASSWORD)
            client.sendmail(USER, [friend], f"From: {USER}\r\nTo: {friend}\r\n"
                            "Subject: hi\r\n\r\nSee you.\r\n".encode())
        store = server.runtime.store
        account = server.call(store.get_account(USER))
        assert account is not None
        known = server.call(store.junk_known_senders(account.id, [friend, "x@example.test"]))
    assert known == {friend}


async def test_a_known_sender_counts_only_with_spf_passing(runtime: Runtime) -> None:
    account = await runtime.accounts.add_account(USER, PASSWORD)
    await JunkFilter(runtime.store, runtime.blobs).note_sent(account.id, ["a@remote.example"])
    scorer = JunkScorer(runtime.store)
    message = received(ham(random.Random(4)))
    assert await scorer.score(account.id, message) == ()  # no SPF verdict: forgeable
    message.spf = SpfResult(SpfVerdict.PASS, "remote.example", "", "smtp.mailfrom",
                            "a@remote.example")
    (symbol,) = await scorer.score(account.id, message)
    assert (symbol.name, symbol.score) == ("JUNK_KNOWN_SENDER", -4.0)
    message.spf = SpfResult(SpfVerdict.SOFTFAIL, "remote.example", "", "smtp.mailfrom",
                            "a@remote.example")
    assert await scorer.score(account.id, message) == ()


class FailingLearner:
    def __init__(self) -> None:
        self.calls = 0

    async def learn(self, message: bytes, *, is_spam: bool) -> bool:
        self.calls += 1
        return False


async def test_a_failing_learner_is_asked_once_per_move(runtime: Runtime) -> None:
    store = runtime.store
    account = await runtime.accounts.add_account(USER, PASSWORD)
    inbox = await store.get_mailbox(account.id, "INBOX")
    junk_box = await store.get_mailbox(account.id, "Junk")
    assert inbox is not None and junk_box is not None
    rng = random.Random(5)
    for _ in range(3):
        data = spam(rng)
        blob_id = await runtime.blobs.put(data)
        await store.append_message(junk_box.id, NewMessage(blob_id, len(data),
                                                           dt.datetime.now(dt.UTC)))
    learner = FailingLearner()
    junk = JunkFilter(store, runtime.blobs, learners=(learner,))
    rows = await store.list_messages(junk_box.id)
    assert await junk.on_filed(account.id, inbox, junk_box, [row.uid for row in rows]) == 3
    assert learner.calls == 1  # rspamd down: not one FILTER_TIMEOUT per message
    assert (await store.junk_totals(account.id)).spam == 3  # our own counts go on
