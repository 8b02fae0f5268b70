"""The admin console (issue 21) over real HTTPS, page by page: every page for an admin,
403 for a user, /login when logged out; every change needs the CSRF token and leaves an
audit entry; what an admin changes is what the services then do (a disabled account's
IMAP login fails, a new password works, a lifted ban lets the client in)."""

from __future__ import annotations

import datetime as dt
import imaplib
import re
import smtplib
import ssl
import urllib.parse

import pytest

from postroom.metrics import TRAFFIC
from postroom.store.api import Ban, QueueEntry
from tests.support.dnsserver import DnsTestServer
from tests.web.conftest import ADMIN, PASSWORD, USER, StartWebApp, WebClient, login

pytestmark = pytest.mark.timeout(120)

PAGES = {  # path → words the page shows
    "/admin": "Today", "/admin/domains": "Domains", "/admin/accounts": "New account",
    "/admin/aliases": "Aliases and catch-alls", "/admin/dns": "DNS &amp; DKIM",
    "/admin/queue": "Outbound queue", "/admin/queue/message?id=none": "no longer in the queue",
    "/admin/bans": "Banned clients", "/admin/greylist": "Greylisting",
    "/admin/filters": "Spam thresholds", "/admin/tls": "TLS certificates",
    "/admin/audit": "Audit log",
}
ACTIONS = ["/admin/accounts/create", "/admin/accounts/password", "/admin/accounts/quota",
           "/admin/accounts/state", "/admin/accounts/delete", "/admin/aliases/create",
           "/admin/aliases/delete", "/admin/dns/dkim", "/admin/queue/retry",
           "/admin/queue/delete", "/admin/bans/delete", "/admin/greylist/delete",
           "/admin/filters/thresholds"]


def admin_client(app: object, tls: ssl.SSLContext) -> WebClient:
    client = WebClient(app, tls)  # type: ignore[arg-type]
    assert login(client, ADMIN).status == 303
    return client


def act(web: WebClient, page: str, action: str, **form: str) -> str:
    """POST `form` to `action` with the CSRF token of `page`; the flash message shown on
    the page the action redirects to."""
    token = web.get(page).csrf()
    answer = web.post(action, {"csrf_token": token, **form})
    assert answer.status == 303, (answer.status, answer.body[:300])
    shown = web.get(answer.location)
    match = re.search(r'<p class="flash flash-(\w+)" role="status">(.*?)</p>', shown.body)
    assert match, shown.body[:500]
    return f"{match.group(1)}: {match.group(2)}"


def audited(app: object, action: str) -> list[str]:
    entries = app.call(app.runtime.store.audit_entries())  # type: ignore[attr-defined]
    return [entry.target for entry in entries if entry.action == action]


def imap_login(app: object, tls: ssl.SSLContext, address: str, password: str) -> bool:
    port = app.port("imaps")  # type: ignore[attr-defined]
    with imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=tls, timeout=30) as imap:
        try:
            imap.login(address, password)
        except imaplib.IMAP4.error:
            return False
        return True


def test_every_page_for_admins_only(web_app: StartWebApp, client_tls: ssl.SSLContext
                                    ) -> None:
    with web_app() as app:
        admin = admin_client(app, client_tls)
        for path, words in PAGES.items():
            page = admin.get(path)
            assert page.status == (404 if "message?id" in path else 200), path
            assert words in page.body, path
        user = WebClient(app, client_tls)
        assert login(user, USER).status == 303
        for path in PAGES:
            assert user.get(path).status == 403, path
        token = user.get("/admin").csrf()  # the 403 page has the logout form
        for path in ACTIONS:
            assert user.post(path, {"csrf_token": token, "address": USER}).status == 403
        anonymous = WebClient(app, client_tls)
        answer = anonymous.get("/admin/accounts")
        assert answer.status == 303 and answer.location.startswith("/login?")


def test_changes_need_the_csrf_token(web_app: StartWebApp, client_tls: ssl.SSLContext
                                     ) -> None:
    with web_app() as app:
        admin = admin_client(app, client_tls)
        form = {"address": "new@example.test", "password": "secret secret"}
        assert admin.post("/admin/accounts/create", form).status == 403
        assert admin.post("/admin/accounts/create", {**form, "csrf_token": "x" * 43}
                          ).status == 403
        assert app.call(app.runtime.store.get_account("new@example.test")) is None
        assert audited(app, "account.create") == []


def test_accounts_create_reset_quota_disable_delete(web_app: StartWebApp,
                                                   client_tls: ssl.SSLContext) -> None:
    with web_app() as app:
        admin = admin_client(app, client_tls)
        page = "/admin/accounts"
        new = "carol@example.test"
        assert act(admin, page, page + "/create", address=new, password="first pass") == (
            f"info: Created {new}.")
        assert "already exists" in act(admin, page, page + "/create", address=new,
                                       password="again")
        assert act(admin, page, page + "/create", address="not an address",
                   password="x").startswith("error: ")
        assert new in admin.get(page + "?q=carol").body
        assert new not in admin.get(page + "?q=nobody").body
        assert imap_login(app, client_tls, new, "first pass")

        act(admin, page, page + "/password", address=new, password="second pass")
        assert not imap_login(app, client_tls, new, "first pass")
        assert imap_login(app, client_tls, new, "second pass")

        assert act(admin, page, page + "/quota", address=new, size="10M") == (
            f"info: Quota of {new}: 10M.")
        assert "10M" in admin.get(page + "?q=carol").body
        assert act(admin, page, page + "/quota", address=new, size="lots").startswith("error")

        assert act(admin, page, page + "/state", address=new, change="disable") == (
            f"info: {new} is disabled.")
        assert not imap_login(app, client_tls, new, "second pass")
        carol = WebClient(app, client_tls)
        assert login(carol, new, "second pass").status == 401
        act(admin, page, page + "/state", address=new, change="enable")
        assert imap_login(app, client_tls, new, "second pass")
        assert "cannot lock out" in act(admin, page, page + "/state", address=ADMIN,
                                        change="disable")

        assert "type its address" in act(admin, page, page + "/delete", address=new,
                                         confirm="wrong")
        assert act(admin, page, page + "/delete", address=new, confirm=new) == (
            f"info: Deleted {new} and its mail.")
        assert app.call(app.runtime.store.get_account(new)) is None
        for action in ("account.create", "account.password", "account.quota",
                       "account.disable", "account.enable", "account.delete"):
            assert audited(app, action) == [new], action
        log = admin.get("/admin/audit?actor=" + urllib.parse.quote(ADMIN)).body
        rows = re.findall(r'<tr class="audit"><td>[^<]*</td><td>([^<]*)</td><td>([^<]*)</td>'
                          r'<td>([^<]*)</td>', log)
        assert rows[0] == (ADMIN, "account.delete", new)  # newest first
        assert (ADMIN, "account.create", new) in rows
        assert "No entries." in admin.get("/admin/audit?actor=someone-else").body


def test_aliases_and_catch_alls(web_app: StartWebApp, client_tls: ssl.SSLContext) -> None:
    with web_app() as app:
        admin = admin_client(app, client_tls)
        page = "/admin/aliases"
        assert act(admin, page, page + "/create", source="sales@example.test", target=USER
                   ) == f"info: Created alias sales@example.test → {USER}."
        assert "catch-all" in act(admin, page, page + "/create", source="@example.test",
                                  target=USER)
        listed = admin.get(page).body
        assert "sales@example.test" in listed and "@example.test" in listed
        assert "is an account" in act(admin, page, page + "/create", source=ADMIN,
                                      target=USER)
        act(admin, page, page + "/delete", source="sales@example.test", target=USER)
        aliases = app.call(app.runtime.store.list_aliases())
        assert [(a.source, a.target) for a in aliases] == [("@example.test", USER)]
        assert audited(app, "alias.delete") == ["sales@example.test"]


def test_hostile_values_are_escaped(web_app: StartWebApp, client_tls: ssl.SSLContext
                                    ) -> None:
    with web_app() as app:
        admin = admin_client(app, client_tls)
        evil = "<script>alert(1)</script>"
        page = admin.get("/admin/accounts?q=" + urllib.parse.quote(evil))
        assert evil not in page.body and "&lt;script&gt;" in page.body
        flash = act(admin, "/admin/filters", "/admin/filters/thresholds", address=USER,
                    tag=evil)
        assert "<script>" not in flash and "&lt;script&gt;" in flash


def test_oversized_and_malformed_input_gets_a_clear_answer(
        web_app: StartWebApp, client_tls: ssl.SSLContext) -> None:
    with web_app() as app:
        admin = admin_client(app, client_tls)
        page = "/admin/accounts"
        assert "at most 1024 characters" in act(admin, page, page + "/password",
                                                address=USER, password="p" * 1025)
        assert imap_login(app, client_tls, USER, PASSWORD)  # unchanged
        assert "at most 1024T" in act(admin, page, page + "/quota", address=USER,
                                      size="99999999999T")
        assert "address" in act(admin, page, page + "/create", address="", password="x")
        dns = admin.get("/admin/dns?domain=example.test&ipv4=999.1.1.1")
        assert dns.status == 200 and "does not appear to be an IPv4" in dns.body
        assert admin.get("/admin/accounts?page=" + "9" * 50).status == 200
        assert admin.get("/admin/queue/message?id=" + "x" * 5000).status == 404


def test_dns_page_checks_each_record_live(web_app: StartWebApp, client_tls: ssl.SSLContext
                                          ) -> None:
    with DnsTestServer() as dns, web_app(DNS_NAMESERVERS=dns.address) as app:
        dns.add("example.test.", "MX", "10 mail.example.test.")
        dns.add("mail.example.test.", "A", "127.0.0.1")
        admin = admin_client(app, client_tls)
        assert act(admin, "/admin/dns?domain=example.test", "/admin/dns/dkim",
                   domain="example.test", selector="mail", algorithm="ed25519").startswith(
            "info: New ed25519 key mail for example.test")
        assert "already has a key" in act(admin, "/admin/dns?domain=example.test",
                                          "/admin/dns/dkim", domain="example.test",
                                          selector="mail", algorithm="rsa")
        page = admin.get("/admin/dns?domain=example.test").body
        rows = dict(re.findall(r'data-record="([^"]+)" data-status="([^"]+)"', page))
        assert rows["MX"] == "ok", rows
        assert rows["DKIM mail"] == "missing", rows  # generated, not yet published
        assert rows["DMARC"] == "missing", rows
        assert re.search(r'class="finding bad" data-record="DMARC"', page)
        assert "mail._domainkey" in page  # the record to publish
        assert audited(app, "dkim.generate") == ["example.test"]
        bad = admin.get("/admin/dns?domain=" + urllib.parse.quote("bad..name<x>"))
        assert bad.status == 200 and '<p class="flash flash-error">' in bad.body
        assert "<x>" not in bad.body


def test_queue_list_view_retry_delete(web_app: StartWebApp, client_tls: ssl.SSLContext
                                      ) -> None:
    # The relay is a closed port: a retried message is deferred, never sent anywhere.
    with web_app(RELAY_HOST="127.0.0.1", RELAY_PORT=9) as app:
        raw = (b"From: user@example.test\r\nTo: far@remote.example\r\n"
               b"Subject: <b>quarterly</b> report\r\n\r\nbody\r\n")
        now = dt.datetime.now(dt.UTC)

        async def queue_one() -> None:
            blob_id = await app.runtime.blobs.put(raw)
            await app.runtime.store.enqueue([QueueEntry(
                0, "msg-1", USER, "far@remote.example", "remote.example", blob_id,
                len(raw), now, now + dt.timedelta(days=1), 2, "451 4.4.1 try later")])

        app.call(queue_one())
        admin = admin_client(app, client_tls)
        listed = admin.get("/admin/queue").body
        assert "msg-1" in listed and "451 4.4.1 try later" in listed
        message = admin.get("/admin/queue/message?id=msg-1").body
        assert "&lt;b&gt;quarterly&lt;/b&gt; report" in message and "<b>quarterly" not in message
        assert "far@remote.example" in message
        assert act(admin, "/admin/queue", "/admin/queue/retry", message_id="msg-1"
                   ).startswith("info: Retrying msg-1 now (1 recipient(s))")
        assert act(admin, "/admin/queue", "/admin/queue/delete", message_id="msg-1"
                   ).startswith("info: Deleted msg-1")
        assert app.call(app.runtime.store.list_queue()) == []
        assert "no queued message" in act(admin, "/admin/queue", "/admin/queue/delete",
                                          message_id="msg-1")
        assert audited(app, "queue.retry") == ["msg-1"]
        assert audited(app, "queue.delete") == ["msg-1"]


def test_bans_greylist_thresholds_tls(web_app: StartWebApp, client_tls: ssl.SSLContext
                                      ) -> None:
    with web_app() as app:
        now = dt.datetime.now(dt.UTC)
        store = app.runtime.store
        app.call(store.add_ban(Ban("192.0.2.7", now, now + dt.timedelta(hours=1), 9, "tries")))
        app.call(store.greylist_seen("198.51.100", "spam@far.example", USER, now, now))
        admin = admin_client(app, client_tls)
        assert "192.0.2.7" in admin.get("/admin/bans").body
        assert act(admin, "/admin/bans", "/admin/bans/delete", address="192.0.2.7") == (
            "info: Lifted the ban on 192.0.2.7.")
        assert app.call(store.list_bans(now)) == []

        assert "spam@far.example" in admin.get("/admin/greylist").body
        assert act(admin, "/admin/greylist", "/admin/greylist/delete", client="198.51.100"
                   ) == "info: 198.51.100: 1 entries removed."
        assert app.call(store.list_greylist()) == []

        page = "/admin/filters"
        assert "ordered" in act(admin, page, page + "/thresholds", address=USER, tag="9",
                                kill="3")
        assert "between" in act(admin, page, page + "/thresholds", address=USER, tag="inf")
        assert act(admin, page, page + "/thresholds", address=USER, tag="1.5", kill="12"
                   ) == f"info: Thresholds of {USER}: tag=1.5, kill=12.0."
        assert USER in admin.get(page).body
        act(admin, page, page + "/thresholds", address=USER, clear="1")
        assert app.call(store.list_spam_thresholds()) == []
        for action in ("ban.delete", "greylist.delete", "filter.set", "filter.clear"):
            assert audited(app, action), action

        tls = admin.get("/admin/tls").body
        assert "mail.example.test" in tls and 'class="certificate ok"' in tls


def test_dashboard_counts_todays_traffic(web_app: StartWebApp, client_tls: ssl.SSLContext
                                         ) -> None:
    with web_app() as app:
        admin = admin_client(app, client_tls)

        def shown(name: str) -> int:
            body = admin.get("/admin").body
            match = re.search(rf'id="{name}">(\d+)<', body)
            assert match, body[:400]
            return int(match.group(1))

        before = sum(hour.received for hour in TRAFFIC.hours())
        assert shown("received") == before
        with smtplib.SMTP("127.0.0.1", app.port("smtp"), timeout=30) as smtp:
            smtp.sendmail("someone@far.example", [USER], b"Subject: hi\r\n\r\nhello\r\n")
            with pytest.raises(smtplib.SMTPRecipientsRefused):  # an unknown local address
                smtp.sendmail("someone@far.example", ["nobody@example.test"], b"x\r\n")
        assert shown("received") == before + 1
        assert shown("rejected") >= 1
        assert "<svg" in admin.get("/admin").body and "<rect" in admin.get("/admin").body
