"""Pure parts of quotas (issue 17): what a setting means under ENABLE_QUOTAS,
DEFAULT_QUOTA and the POSTFIX_MAILBOX_SIZE_LIMIT cap; which limit an addition breaks; the
warning levels and text; docker-mailserver's dovecot-quotas.cf lines; the QUOTA parsers."""

from __future__ import annotations

import datetime as dt
import email
import email.policy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postroom.accounts.quota import Full, QuotaPolicy, Room, render_size, render_warning
from postroom.config import parse_size
from postroom.imap.commands.quota import quota_resources
from postroom.imap.wire.commands import parse_command
from postroom.imap.wire.commands.quota import GetQuota, GetQuotaRoot, SetQuota
from postroom.imap.wire.lexer import ParseError
from postroom.importers.dms_quotas import parse_quotas
from postroom.store.quota_api import QuotaSetting, QuotaUsage

G = 1024**3


def room(size: int = 0, messages: int = 0, storage: int | None = None,
         message_limit: int | None = None, policy: QuotaPolicy | None = None,
         in_mailbox: int = 0) -> Room:  # fmt: skip
    usage = QuotaUsage(1, "user@example.test", QuotaSetting(storage, message_limit), messages,
                       size, in_mailbox)
    return Room(usage, policy or QuotaPolicy(cap=20 * G))


@pytest.mark.parametrize(("policy", "setting", "limit"), [
    (QuotaPolicy(cap=20 * G), None, 20 * G),  # no DEFAULT_QUOTA: the cap, as DMS
    (QuotaPolicy(default_storage=2 * G, cap=20 * G), None, 2 * G),
    (QuotaPolicy(default_storage=2 * G, cap=20 * G), 5 * G, 5 * G),  # its own, above default
    (QuotaPolicy(default_storage=2 * G, cap=20 * G), 0, 20 * G),  # none of its own: the cap
    (QuotaPolicy(default_storage=0, cap=0), None, 0),  # nothing limits
    (QuotaPolicy(is_enabled=False, default_storage=2 * G, cap=20 * G), 1 * G, 20 * G),
    (QuotaPolicy(is_enabled=False, cap=0), 1 * G, 0),
    (QuotaPolicy(cap=1 * G), 5 * G, 1 * G),  # never above the cap
])  # fmt: skip
def test_storage_limit(policy: QuotaPolicy, setting: int | None, limit: int) -> None:
    assert policy.storage_limit(setting) == limit


def test_which_limit_breaks() -> None:
    policy = QuotaPolicy(cap=10_000, mailbox_messages=100)
    assert room(9_000, policy=policy).full_for(messages=1, size=1_000) is None
    assert room(9_000, policy=policy).full_for(messages=1, size=1_001) is Full.ACCOUNT_SIZE
    assert room(1_000, storage=2_000, policy=policy).full_for(messages=1, size=1_001) \
        is Full.QUOTA
    assert room(0, 5, message_limit=5, policy=policy).full_for(messages=1, size=1) \
        is Full.QUOTA
    assert room(in_mailbox=100, policy=policy).full_for(messages=1, size=1) is Full.MESSAGES
    # MOVE keeps bytes and messages in the account: only the mailbox's count matters.
    assert room(10_000, 5, storage=10, message_limit=5, policy=policy).full_for(
        messages=1, size=50, adds_to_account=False) is None
    off = QuotaPolicy(is_enabled=False, cap=10_000)
    assert room(1_000, storage=2_000, policy=off).full_for(messages=1, size=5_000) is None
    assert Full.QUOTA.imap_code == Full.ACCOUNT_SIZE.imap_code == "OVERQUOTA"
    assert Full.MESSAGES.imap_code == "LIMIT"


def test_warning_levels() -> None:
    assert room(790, storage=1000).level_after(size=9) == 0
    assert room(790, storage=1000).level_after(size=10) == 80
    assert room(0, storage=1000).level_after(size=999) == 95  # the highest level crossed
    assert room(0, 94, message_limit=100, storage=10**9).level_after(messages=1) == 95
    assert room(10**12, policy=QuotaPolicy()).level_after(size=1) == 0  # no limit at all
    assert room(990, storage=1000, policy=QuotaPolicy(is_enabled=False, cap=1000)
                ).level_after() == 0  # ENABLE_QUOTAS=0: the cap alone, no warnings


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**6), st.integers(1, 10**6), st.integers(0, 10**6))
def test_levels_agree_with_fullness(used: int, limit: int, added: int) -> None:
    """Whatever the numbers: past the limit is always level 95, under 80 % always 0."""
    subject = room(used, storage=limit, policy=QuotaPolicy())
    level = subject.level_after(size=added)
    if subject.full_for(messages=0, size=added) is Full.QUOTA:
        assert level == 95
    if (used + added) * 100 < limit * 80:
        assert level == 0


def test_render_size_reads_back() -> None:
    for size in (0, 100, 1024, 1536, 2 * G, 500 * 1024**2):
        assert abs(parse_size(render_size(size)) - size) <= size // 100
    assert render_size(2 * G) == "2G" and render_size(1536) == "1.5K"


def test_warning_message() -> None:
    subject = room(850 * 1024**2, 10, storage=G, message_limit=1000)
    raw = render_warning(subject, 80, hostname="mail.example.test",
                         when=dt.datetime(2026, 12, 7, tzinfo=dt.UTC))  # fmt: skip
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["From"] == "Mail Delivery System <postmaster@example.test>"
    assert parsed["To"].addresses[0].addr_spec == "user@example.test"
    assert parsed["Subject"] == "Mailbox quota warning: 80% used"
    assert parsed["Auto-Submitted"] == "auto-generated"  # RFC 3834: no auto-replies to it
    body = parsed.get_content()  # type: ignore[attr-defined]
    assert "850M of 1G (83%)" in body and "10 of 1000 messages" in body
    assert "empty your Trash" in body
    assert all(line.endswith(b"\r") or not line for line in raw.split(b"\n")[:-1])


def test_dovecot_quotas_lines() -> None:
    skipped: list[tuple[str, str]] = []
    lines = [("f:1", "alice@example.com:2G"), ("f:2", "Bob@Example.com:500M"),
             ("f:3", "carol@example.com:lots"), ("f:4", "no-colon"),
             ("f:5", "alice@example.com:1G"), ("f:6", "dave@example.com:0")]
    quotas = parse_quotas(lines, lambda where, why: skipped.append((where, why)))
    assert {a: q.storage for a, q in quotas.items()} == {
        "alice@example.com": 2 * G, "bob@example.com": 500 * 1024**2, "dave@example.com": 0}
    assert [where for where, _ in skipped] == ["f:3", "f:4", "f:5"]
    assert "appears again (first at f:1)" in skipped[2][1]


def test_quota_resources_in_kib() -> None:
    resources = quota_resources(room(1025, 3, storage=10 * 1024 + 1023, message_limit=50))
    assert resources[1:3] == [2, 10] and resources[4:] == [3, 50]  # usage up, limit down
    assert quota_resources(room(5, policy=QuotaPolicy())) == []
    off = QuotaPolicy(is_enabled=False, cap=2048)  # ENABLE_QUOTAS=0: the cap is reported
    assert quota_resources(room(5, storage=1024, message_limit=3, policy=off))[1:] == [1, 2]


def test_parsers() -> None:
    assert parse_command(b'a GETQUOTA ""') == GetQuota("a", "")
    assert parse_command(b"a GETQUOTAROOT inbox") == GetQuotaRoot("a", "INBOX")
    assert parse_command(b'a SETQUOTA "" (storage 512 MESSAGE 10)') == SetQuota(
        "a", "", (("STORAGE", 512), ("MESSAGE", 10)))
    assert parse_command(b'a SETQUOTA "" ()') == SetQuota("a", "", ())
    for bad in (b"a GETQUOTA", b'a SETQUOTA "" (STORAGE)', b'a SETQUOTA "" (STORAGE x)',
                b'a SETQUOTA "" (STORAGE 1 STORAGE 2)', b"a GETQUOTAROOT"):
        with pytest.raises(ParseError):
            parse_command(bad)
