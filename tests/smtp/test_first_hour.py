"""Issue 24, the first hour: postmaster@ and abuse@ (RFC 5321 §4.5.1, RFC 2142), bare LF in
DATA normalized as Postfix 3.9's smtpd_forbid_bare_newline=normalize, dkim=none in
Authentication-Results (RFC 8601 §2.7.1), and bans that spare loopback when
AUTH_BAN_IGNORE_NETWORKS says so and otherwise name `postroom ban del`."""

from __future__ import annotations

import asyncio
import email.message
import poplib
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postroom.runtime import Runtime
from postroom.smtp.policy import SmtpMode
from postroom.smtp.wire import (
    BareNewline,
    BareNewlinePolicy,
    DataChunk,
    DataEnd,
    Noop,
    SmtpConnection,
)
from tests.conftest import TEST_HOSTNAME, make_config
from tests.smtp.conftest import PASSWORD, RawClient, serve, stored_messages
from tests.smtp.test_wire import run_data as wire_run_data
from tests.support.runtime import open_runtime
from tests.support.server import NO_DNS_CHECKS, AppThread, write_env

pytestmark = pytest.mark.timeout(60)

ADMIN = "admin@example.test"  # alphabetically the first account of example.test
USER = "user@example.test"
OTHER = "other@other.test"


@asynccontextmanager
async def runtime_with(tmp_path: Path, server_cert: tuple[Path, Path], password_hash: str,
                       **overrides: object) -> AsyncIterator[Runtime]:
    config = make_config(tmp_path, server_cert, **overrides)
    async with open_runtime(config) as runtime:
        for address in (USER, ADMIN, OTHER):
            await runtime.store.create_account(address, password_hash)
        yield runtime


async def deliver(port: int, recipient: str, body: bytes = b"Subject: hi\r\n\r\nhi\r\n"
                  ) -> tuple[int, str]:
    """One message on port 25; the RCPT reply if refused, else the DATA reply."""
    client = await RawClient.connect(port)
    await client.reply()
    await client.command("EHLO client.example")
    await client.command("MAIL FROM:<someone@remote.example>")
    reply = await client.command(f"RCPT TO:<{recipient}>")
    if reply[0] == 250:
        assert (await client.command("DATA"))[0] == 354
        await client.send(body + b".\r\n")
        reply = await client.reply()
    await client.command("QUIT")
    await client.close()
    return reply


async def counts(runtime: Runtime) -> dict[str, int]:
    return {address: len(await stored_messages(runtime, address))
            for address in (USER, ADMIN, OTHER)}


# -- postmaster@ and abuse@ ------------------------------------------------------------------


@pytest.mark.parametrize("recipient", ["postmaster@example.test", "PostMaster@example.test",
                                       "POSTMASTER@EXAMPLE.TEST"])
async def test_postmaster_of_a_domain_reaches_its_first_account(
        tmp_path: Path, server_cert: tuple[Path, Path], password_hash: str,
        recipient: str) -> None:
    async with runtime_with(tmp_path, server_cert, password_hash) as runtime, \
            serve(runtime) as (port, _):
        code, text = await deliver(port, recipient)
        assert code == 250, text
        assert await counts(runtime) == {USER: 0, ADMIN: 1, OTHER: 0}
        assert (await deliver(port, "postmaster@other.test"))[0] == 250
        assert await counts(runtime) == {USER: 0, ADMIN: 1, OTHER: 1}


async def test_postmaster_address_wins_over_the_fallback_and_bare_postmaster(
        tmp_path: Path, server_cert: tuple[Path, Path], password_hash: str) -> None:
    async with runtime_with(tmp_path, server_cert, password_hash,
                            POSTMASTER_ADDRESS=USER) as runtime, serve(runtime) as (port, _):
        assert (await deliver(port, "postmaster@example.test"))[0] == 250
        assert (await deliver(port, "postmaster@other.test"))[0] == 250
        # RFC 5321 §4.1.1.3: `RCPT TO:<Postmaster>` with no domain, any case.
        assert (await deliver(port, "Postmaster"))[0] == 250
        assert await counts(runtime) == {USER: 3, ADMIN: 0, OTHER: 0}


async def test_bare_postmaster_without_postmaster_address(
        tmp_path: Path, server_cert: tuple[Path, Path], password_hash: str) -> None:
    """The hostname (mail.example.test) is no local domain: the first account of all."""
    async with runtime_with(tmp_path, server_cert, password_hash) as runtime, \
            serve(runtime) as (port, _):
        assert (await deliver(port, "postmaster"))[0] == 250
        assert await counts(runtime) == {USER: 0, ADMIN: 1, OTHER: 0}


async def test_an_explicit_postmaster_alias_wins(
        tmp_path: Path, server_cert: tuple[Path, Path], password_hash: str) -> None:
    async with runtime_with(tmp_path, server_cert, password_hash,
                            POSTMASTER_ADDRESS=ADMIN) as runtime, serve(runtime) as (port, _):
        await runtime.accounts.add_alias("postmaster@example.test", OTHER)
        assert (await deliver(port, "postmaster@example.test"))[0] == 250
        assert await counts(runtime) == {USER: 0, ADMIN: 0, OTHER: 1}


async def test_abuse_goes_to_abuse_address_only_when_set(
        tmp_path: Path, server_cert: tuple[Path, Path], password_hash: str) -> None:
    async with runtime_with(tmp_path, server_cert, password_hash) as runtime, \
            serve(runtime) as (port, _):
        code, text = await deliver(port, "abuse@example.test")
        assert (code, text[:5]) == (550, "5.1.1")
    async with runtime_with(tmp_path / "2", server_cert, password_hash,
                            ABUSE_ADDRESS=OTHER) as runtime, serve(runtime) as (port, _):
        assert (await deliver(port, "abuse@example.test"))[0] == 250
        assert (await deliver(port, "Abuse@other.test"))[0] == 250
        assert await counts(runtime) == {USER: 0, ADMIN: 0, OTHER: 2}


async def test_report_addresses_of_dns_records_are_deliverable(
        tmp_path: Path, server_cert: tuple[Path, Path], password_hash: str) -> None:
    env = write_env(tmp_path / "cli.env", {"DATA_DIR": tmp_path / "cli-data",
                                           "OVERRIDE_HOSTNAME": TEST_HOSTNAME})
    printed = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "postroom", "--config", str(env), "dns",
                         "records", "example.test", "--ip", "192.0.2.10"],
        capture_output=True, text=True, timeout=60)
    assert printed.returncode == 0, printed.stderr
    # rua= / ruf= of the DMARC and TLS-RPT records
    addresses = set(re.findall(r"\bru[af]=mailto:([^;,!\s\"]+)", printed.stdout))
    assert addresses and "_smtp._tls" in printed.stdout and "_dmarc" in printed.stdout
    async with runtime_with(tmp_path, server_cert, password_hash) as runtime, \
            serve(runtime) as (port, _):
        for address in addresses:
            code, text = await deliver(port, address)
            assert code == 250, (address, text)
        assert (await counts(runtime))[ADMIN] == len(addresses)


# -- bare LF: the sans-IO core ---------------------------------------------------------------


def run_data(pieces: list[bytes], policy: BareNewlinePolicy = BareNewlinePolicy.NORMALIZE
             ) -> tuple[bytes, object, SmtpConnection]:
    return wire_run_data(pieces, 0, policy)


def test_lone_lf_is_read_as_crlf_and_lines_after_it_unstuffed() -> None:
    body, final, conn = run_data([b"Subject: x\n\nline\n..dot\r\nend\n\r\n.\r\nNOOP\n"])
    assert body == b"Subject: x\r\n\r\nline\r\n.dot\r\nend\r\n\r\n"
    assert final == DataEnd(len(body))
    assert conn.next_event() == Noop()


def test_end_marker_after_a_lone_lf_is_not_the_end() -> None:
    """Postfix 3.9 normalize: <CRLF>.<CRLF> and nothing else, so a client ending its data
    with <LF>.<CRLF> is not understood (it times out, as with Postfix)."""
    body, final, _ = run_data([b"text\n.\r\n"])
    assert (body, final) == (b"text\r\n\r\n", None)


@pytest.mark.parametrize("fake_end", [b"\n.\n", b"\r\n.\n", b"\n.\r\n"])
def test_normalize_never_ends_data_at_a_fake_end(fake_end: bytes) -> None:
    """Only <CRLF>.<CRLF> ends data: the smuggled commands stay message text."""
    body, final, conn = run_data([b"body" + fake_end + b"MAIL FROM:<e@x.example>\r\n"])
    assert final is None
    conn.receive_data(b"tail\r\n.\r\nNOOP\r\n")
    rest = b""
    while not isinstance(event := conn.next_event(), DataEnd):
        assert isinstance(event, DataChunk)
        rest += event.data
    body += rest
    assert body == b"body\r\n\r\nMAIL FROM:<e@x.example>\r\ntail\r\n"
    assert conn.next_event() == Noop()


@pytest.mark.parametrize("bare_cr", [b"a\rb\r\n.\r\n", b"a\r\n.\rb\r\n.\r\n", b"a\r.\r\n.\r\n"])
def test_bare_cr_still_taints_under_normalize(bare_cr: bytes) -> None:
    _, final, _ = run_data([bare_cr])
    assert final == BareNewline("CR")


@given(st.lists(st.tuples(st.sampled_from([b"", b"x", b".", b"..", b".x", b"a.b"]),
                          st.sampled_from([b"\n", b"\r\n"])), max_size=30),
       st.lists(st.integers(min_value=1, max_value=7), min_size=1, max_size=20))
@settings(max_examples=200, deadline=None)
def test_mixed_line_ends_any_chunking(lines: list[tuple[bytes, bytes]],
                                      cuts: list[int]) -> None:
    """Dot-stuffed lines ending in LF or CRLF, cut anywhere: CRLF lines come back; only the
    final CRLF.CRLF ends the data (a "." after a lone LF is stuffed as ".." here)."""
    sent = b"".join((b"." + text if text.startswith(b".") else text) + end
                    for text, end in lines)
    sent += b".\r\n" if not lines or lines[-1][1] == b"\r\n" else b"\r\n.\r\n"
    expected = b"".join(text + b"\r\n" for text, _ in lines)
    if lines and lines[-1][1] == b"\n":
        expected += b"\r\n"  # the CRLF before the end marker was the client's own line
    pieces, position, index = [], 0, 0
    while position < len(sent):
        pieces.append(sent[position:position + cuts[index % len(cuts)]])
        position, index = position + cuts[index % len(cuts)], index + 1
    body, final, _ = run_data(pieces)
    assert (body, final) == (expected, DataEnd(len(expected)))


# -- bare LF over the wire -------------------------------------------------------------------

LF_TEXT = (b"From: user@example.test\nTo: other@other.test\nSubject: lf only\n\n"
           b"first line\n.leading dot\nlast line\n")


def has_only_crlf(data: bytes) -> bool:
    return data.count(b"\n") == data.count(b"\r\n") and data.count(b"\r") == data.count(b"\n")


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
async def test_curl_upload_of_an_lf_text_file_through_submission(
        tmp_path: Path, server_cert: tuple[Path, Path], password_hash: str) -> None:
    text = tmp_path / "note.txt"
    # curl dot-stuffs only after CRLF, so no line of this file starts with "." (a lone LF
    # starts a line here, as in Postfix, and its dot would be taken as stuffing).
    text.write_bytes(LF_TEXT.replace(b"\n.leading", b"\nno leading"))
    async with runtime_with(tmp_path, server_cert, password_hash) as runtime, \
            serve(runtime, SmtpMode.SUBMISSION) as (port, _):
        done = await asyncio.to_thread(subprocess.run, [
            "curl", "--silent", "--show-error", "--ssl-reqd", "--insecure",
            f"smtp://127.0.0.1:{port}", "--mail-from", USER, "--mail-rcpt", OTHER,
            "--user", f"{USER}:{PASSWORD}", "--upload-file", str(text)],
            capture_output=True, timeout=30)
        assert done.returncode == 0, done.stderr
        (stored,) = await stored_messages(runtime, OTHER)
    assert has_only_crlf(stored)
    assert b"\r\n\r\nfirst line\r\nno leading dot\r\nlast line\r\n" in stored


async def test_smtplib_sendmail_of_lf_bytes(
        tmp_path: Path, server_cert: tuple[Path, Path], password_hash: str) -> None:
    message = email.message.EmailMessage()
    message["From"], message["To"], message["Subject"] = USER, OTHER, "from smtplib"
    message.set_content("first line\n.leading dot\nlast line\n")
    raw = message.as_bytes()
    assert b"\r" not in raw

    def send(port: int) -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            smtp.sendmail(USER, [OTHER], raw)

    async with runtime_with(tmp_path, server_cert, password_hash) as runtime, \
            serve(runtime) as (port, _):
        await asyncio.to_thread(send, port)
        (stored,) = await stored_messages(runtime, OTHER)
    assert has_only_crlf(stored)
    assert b"\r\n\r\nfirst line\r\n.leading dot\r\nlast line\r\n" in stored


async def send_raw_lf(port: int) -> tuple[int, str, bool]:
    client = await RawClient.connect(port)
    await client.reply()
    await client.command("EHLO client.example")
    await client.command("MAIL FROM:<someone@remote.example>")
    assert (await client.command(f"RCPT TO:<{OTHER}>"))[0] == 250
    assert (await client.command("DATA"))[0] == 354
    await client.send(LF_TEXT + b"\r\n.\r\n")  # the end marker as smtplib and curl send it
    code, text = await client.reply()
    is_closed = code == 521 and await client.is_closed()
    await client.close()
    return code, text, is_closed


async def test_reject_setting_refuses_bare_lf_except_for_trusted_networks(
        tmp_path: Path, server_cert: tuple[Path, Path], password_hash: str) -> None:
    async with runtime_with(tmp_path, server_cert, password_hash,
                            SMTPD_FORBID_BARE_NEWLINE="reject") as runtime, \
            serve(runtime) as (port, _):
        code, text, is_closed = await send_raw_lf(port)
        assert (code, text[:5], is_closed) == (521, "5.5.2", True)
        assert await stored_messages(runtime, OTHER) == []
    async with runtime_with(tmp_path / "2", server_cert, password_hash,
                            SMTPD_FORBID_BARE_NEWLINE="reject",
                            TRUSTED_NETWORKS="127.0.0.1/32") as runtime, \
            serve(runtime) as (port, _):
        code, text, _ = await send_raw_lf(port)
        assert code == 250, text
        (stored,) = await stored_messages(runtime, OTHER)
        assert has_only_crlf(stored)


# -- Authentication-Results ------------------------------------------------------------------


async def test_unsigned_mail_gets_dkim_none(
        tmp_path: Path, server_cert: tuple[Path, Path], password_hash: str) -> None:
    async with runtime_with(tmp_path, server_cert, password_hash, ENABLE_OPENDKIM=1,
                            ENABLE_OPENDMARC=0, ENABLE_POLICYD_SPF=0) as runtime, \
            serve(runtime, verify_senders=True) as (port, _):
        assert (await deliver(port, OTHER))[0] == 250
        (stored,) = await stored_messages(runtime, OTHER)
    header = re.sub(rb"\r\n[ \t]+", b" ", stored.split(b"\r\n\r\n")[0])  # unfolded
    fields = [line for line in header.split(b"\r\n")
              if line.lower().startswith(b"authentication-results:")]
    assert fields == [f"Authentication-Results: {TEST_HOSTNAME}; dkim=none".encode()]


# -- bans and loopback -----------------------------------------------------------------------


@contextmanager
def app_with(tmp_path: Path, server_cert: tuple[Path, Path], **overrides: object
             ) -> Iterator[AppThread]:
    values: dict[str, object] = {"AUTH_FAILURE_DELAY": 0, **NO_DNS_CHECKS, **overrides}
    with AppThread(make_config(tmp_path, server_cert, **values)) as app:
        app.add_account(USER, PASSWORD)
        yield app


def fail_pop3_logins(app: AppThread, tls: ssl.SSLContext, times: int) -> None:
    """As the README's POP3 snippet with its placeholder password, `times` times."""
    for _ in range(times):
        pop = poplib.POP3_SSL("127.0.0.1", app.port("pop3s"), context=tls, timeout=10)
        pop.user(USER)
        with pytest.raises(poplib.error_proto):
            pop.pass_("your password")
        pop.close()


def greeting(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        return sock.makefile("rb").readline()


def test_loopback_in_ban_ignore_networks_is_never_banned(
        tmp_path: Path, server_cert: tuple[Path, Path], client_tls: ssl.SSLContext) -> None:
    with app_with(tmp_path, server_cert, AUTH_BAN_MAX_FAILURES=5,
                  AUTH_BAN_IGNORE_NETWORKS="127.0.0.0/8,::1") as app:
        fail_pop3_logins(app, client_tls, 5)
        with smtplib.SMTP("127.0.0.1", app.port("smtp"), timeout=10) as smtp:
            smtp.sendmail("someone@remote.example", [USER], b"Subject: still here\r\n\r\nx\r\n")
        pop = poplib.POP3_SSL("127.0.0.1", app.port("pop3s"), context=client_tls, timeout=10)
        pop.user(USER)
        pop.pass_(PASSWORD)
        assert pop.stat()[0] == 1
        pop.quit()


def test_ban_reply_names_the_way_to_lift_it(
        tmp_path: Path, server_cert: tuple[Path, Path], client_tls: ssl.SSLContext) -> None:
    with app_with(tmp_path, server_cert, AUTH_BAN_MAX_FAILURES=5) as app:
        fail_pop3_logins(app, client_tls, 5)
        for name in ("smtp", "submission", "pop3", "imap"):
            line = greeting(app.port(name))
            assert b"postroom ban del ADDRESS" in line, (name, line)
            assert b"127.0.0.1" not in line


def test_dev_config_ignores_loopback_for_bans() -> None:
    env = Path(__file__).resolve().parents[2] / "dev" / "postroom.env"
    assert re.search(r"(?m)^AUTH_BAN_IGNORE_NETWORKS=127\.0\.0\.0/8,::1$", env.read_text())
