"""The Maildir/Dovecot file formats, read (dms_import) and written (maildir_export)."""

from __future__ import annotations

import contextlib
import datetime as dt
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postroom.errors import BadSyntax
from postroom.importers.dms_import import (
    ImportReport,
    parse_accounts,
    parse_aliases,
    parse_dkim_keys,
    parse_password_hash,
)
from postroom.importers.maildir import (
    keyword_letters,
    maildir_data,
    normalise_line_ends,
    parse_folder_dir,
    parse_info_flags,
    parse_keywords,
    parse_subscriptions,
    parse_uidlist,
    render_folder_dir,
    render_info,
    render_keywords,
    render_subscriptions,
    render_uidlist,
    split_maildir_name,
)
from postroom.store.api import Mailbox, MessageRow
from tests.dms_import.dms_folder import sha512_crypt


def test_uidlist_version_3_with_extensions() -> None:
    text = ("3 V1275660208 N25022 G3085f01b7f11094c501100008c4a11c1\n"
            "1 :1276528487.M364837P9451.kurkku,S=1355,W=1394\n"
            "2 W1260 G0123 :1276528488.M1P2.host,S=10:2,S\n"
            "garbage line\n")
    uidlist = parse_uidlist(text)
    assert (uidlist.uidvalidity, uidlist.uidnext) == (1275660208, 25022)
    assert uidlist.uids == {"1276528487.M364837P9451.kurkku,S=1355,W=1394": 1,
                            "1276528488.M1P2.host,S=10": 2}


def test_uidlist_version_1_and_a_nextuid_behind_the_uids() -> None:
    uidlist = parse_uidlist("1 1000 3\n1 one.host\n7 two.host:2,RS\n")
    assert uidlist.uidvalidity == 1000
    assert uidlist.uidnext == 8  # never below the highest listed UID + 1
    assert uidlist.uids == {"one.host": 1, "two.host": 7}


@pytest.mark.parametrize("text", ["", "2 V1 N2\n", "3 N5 G00\n", "3 Vabc N5\n", "3 V² N5\n",
                                  "3 V0 N5\n", "3 V4294967296 N5\n"])
def test_unreadable_uidlist_header(text: str) -> None:
    with pytest.raises(BadSyntax):
        parse_uidlist(text)


def test_info_letters_and_keywords() -> None:
    keywords = parse_keywords("0 $Forwarded\n1 Work\nbad\n30 Too-far\n")
    assert keywords == {"a": "$Forwarded", "b": "Work"}
    flags, unknown = parse_info_flags("DFPRSTabz", keywords)
    assert flags == {"\\Draft", "\\Flagged", "\\Answered", "\\Seen", "\\Deleted",
                     "$Forwarded", "Work"}
    assert unknown == "z"


def test_maildir_names() -> None:
    assert split_maildir_name("1700000000.M1P2.host,S=5,W=6:2,RS") == (
        "1700000000.M1P2.host,S=5,W=6", "RS")
    assert split_maildir_name("1700000000.M1P2.host") == ("1700000000.M1P2.host", "")
    assert parse_folder_dir(".Archive.2024") == "Archive/2024"
    assert parse_folder_dir(".&AMk-t&AOk-") == "Été"
    assert parse_folder_dir(".Été") == "Été"  # a Dovecot storing UTF-8 names
    with pytest.raises(BadSyntax):
        parse_folder_dir(".A..B")
    with pytest.raises(BadSyntax):
        parse_folder_dir(".&Jjo")  # unterminated shift


_LEVEL = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="./"),
                 min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(st.lists(_LEVEL, min_size=1, max_size=4))
def test_folder_names_round_trip(levels: list[str]) -> None:
    name = "/".join(levels)
    if name.upper() == "INBOX":
        return
    assert parse_folder_dir(render_folder_dir(name)) == name


def test_a_dot_in_a_name_cannot_be_exported() -> None:
    with pytest.raises(BadSyntax):
        render_folder_dir("v1.2")
    assert render_folder_dir("INBOX") == ""


@settings(max_examples=200, deadline=None)
@given(st.frozensets(st.sampled_from(["\\Seen", "\\Answered", "\\Flagged", "\\Deleted",
                                      "\\Draft", "$Forwarded", "Work", "$Junk"])))
def test_flags_round_trip(flags: frozenset[str]) -> None:
    row = MessageRow(1, 1, 1, "b", 1, dt.datetime.now(dt.UTC), flags)
    letters, left_over = keyword_letters([row])
    assert not left_over
    info = render_info(flags, letters)
    assert info[3:] == "".join(sorted(info[3:]))  # ASCII order, as the Maildir spec asks
    keywords = parse_keywords(render_keywords(letters))
    assert parse_info_flags(info.removeprefix(":2,"), keywords) == (flags, "")


def test_more_than_26_keywords_are_reported() -> None:
    row = MessageRow(1, 1, 1, "b", 1, dt.datetime.now(dt.UTC),
                     frozenset(f"k{i:02}" for i in range(30)))
    letters, left_over = keyword_letters([row])
    assert len(letters) == 26 and left_over == ["k26", "k27", "k28", "k29"]


def test_uidlist_round_trip() -> None:
    mailbox = Mailbox(1, 1, "INBOX", 1234567, 42, 1, None, True)
    uidlist = parse_uidlist(render_uidlist(mailbox, [(3, "a.host,S=1"), (41, "b.host,S=2")]))
    assert (uidlist.uidvalidity, uidlist.uidnext) == (1234567, 42)
    assert uidlist.uids == {"a.host,S=1": 3, "b.host,S=2": 41}


def test_subscriptions_both_versions() -> None:
    assert parse_subscriptions(render_subscriptions(["Sent", "A/B", "Été"])) == {
        "Sent", "A/B", "Été"}
    assert parse_subscriptions("Sent\nArchive.2024\n") == {"Sent", "Archive/2024"}


@pytest.mark.parametrize("raw", [b"A: b\r\n\r\nbody\r\n", b"A: b\r\n\r\nbare\nLF\r\n",
                                 b"A: b\r\n\r\nbare\rCR\r\n"])
def test_line_ends_round_trip(raw: bytes) -> None:
    data = maildir_data(raw)
    assert (b"\r" not in data) == (raw.count(b"\r") == raw.count(b"\r\n") == raw.count(b"\n"))
    if b"\r" not in data:
        assert normalise_line_ends(data) == raw


def test_password_hashes() -> None:
    real = "{SHA512-CRYPT}" + sha512_crypt("pw", "saltsalt")
    assert parse_password_hash(real) == real
    for bad in ("{PLAIN}secret", "$6$saltsalt$abc", "{SHA512-CRYPT}$6$salt$tooshort", ""):
        with pytest.raises(BadSyntax):
            parse_password_hash(bad)


def test_bad_lines_are_reported_with_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "postfix-accounts.cf").write_text(
        "# comment\n\nnot-an-address|{SHA512-CRYPT}x\n"
        f"a@example.com|{{SHA512-CRYPT}}{sha512_crypt('pw', 'saltsalt')}\n"
        f"A@example.com|{{SHA512-CRYPT}}{sha512_crypt('pw', 'saltsalt')}\n")
    (tmp_path / "postfix-virtual.cf").write_text(
        "x@example.com a@example.com, b@example.com\n@example.org\tc@example.com\nlonely\n"
        "y@example.com not an address\nx@example.com b@example.com\n")
    report = ImportReport(is_dry_run=True)
    accounts = parse_accounts(tmp_path, report)
    aliases = parse_aliases(tmp_path, report)
    assert [a.address for a in accounts] == ["a@example.com"]
    assert [(a.source, a.target) for a in aliases] == [
        ("x@example.com", "a@example.com"), ("x@example.com", "b@example.com"),
        ("@example.org", "c@example.com")]
    assert [s.where for s in report.skipped] == [
        "config/postfix-accounts.cf:3", "config/postfix-accounts.cf:5",
        "config/postfix-virtual.cf:3", "config/postfix-virtual.cf:4",
        "config/postfix-virtual.cf:5"]
    assert "first at config/postfix-accounts.cf:4" in report.skipped[1].reason


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_parsers_take_any_text(text: str) -> None:
    parse_keywords(text)
    parse_subscriptions(text)
    parse_info_flags(text, {"a": "x"})
    split_maildir_name(text)
    for parse in (parse_uidlist, parse_folder_dir):
        with contextlib.suppress(BadSyntax):
            parse(text)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["1 ", "3 V", "3 V1 N", "1 1 2\n"]), st.text(max_size=100))
def test_uidlist_parser_takes_any_tail(head: str, tail: str) -> None:
    with contextlib.suppress(BadSyntax):
        parse_uidlist(head + tail)


def test_dkim_keys_from_opendkim_and_rspamd(tmp_path: Path) -> None:
    pem = subprocess.run(["openssl", "genrsa", "-traditional", "1024"], capture_output=True,
                         check=True).stdout
    opendkim = tmp_path / "opendkim" / "keys"
    for domain, selector in (("example.com", "mail"), ("example.com", "old")):
        (opendkim / domain).mkdir(parents=True, exist_ok=True)
        (opendkim / domain / f"{selector}.private").write_bytes(pem)
    (tmp_path / "opendkim" / "KeyTable").write_text(
        "mail._domainkey.example.com example.com:mail:/etc/opendkim/keys/example.com/"
        "mail.private\nbroken line\n")
    rspamd = tmp_path / "rspamd" / "dkim"
    rspamd.mkdir(parents=True)
    (rspamd / "rsa-1024-dkim-example.org.private.txt").write_bytes(pem)
    (rspamd / "rsa-1024-mail-example.com.private.txt").write_bytes(pem)
    (rspamd / "ed25519-256-ed-example.org.private.txt").write_text("bm90IGEgUEVNIGtleQ==\n")
    report = ImportReport(is_dry_run=True)
    keys = parse_dkim_keys(tmp_path, report)
    assert [(k.domain, k.selector) for k in keys] == [("example.com", "mail"),
                                                      ("example.org", "dkim")]
    assert all(k.private_pem == pem for k in keys)
    reasons = {s.where: s.reason for s in report.skipped}
    assert reasons["config/opendkim/KeyTable:2"].startswith("expected `name domain:")
    assert "not in opendkim/KeyTable" in reasons["config/opendkim/keys/example.com/old.private"]
    assert "DKIM key not usable" in reasons["config/rspamd/dkim/ed25519-256-ed-example.org"
                                            ".private.txt"]
    assert "a second key for example.com selector mail" in reasons[
        "config/rspamd/dkim/rsa-1024-mail-example.com.private.txt"]
