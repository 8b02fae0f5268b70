"""The admin console in a real browser (issue 21, "Done when"): headless Debian chromium
through selenium against a real App over HTTPS. An admin logs in, creates an account and
an alias, sees the DNS status of the domain, and deletes a queued message; screenshots of
the dashboard, accounts, DNS and queue pages go to test-output/screenshots/."""

from __future__ import annotations

import datetime as dt
import smtplib

import pytest

from postroom.store.api import QueueEntry
from tests.support.dnsserver import DnsTestServer
from tests.web.browser import Browser
from tests.web.conftest import ADMIN, PASSWORD, USER, StartWebApp

pytestmark = pytest.mark.timeout(180)


def queue_message(app: object, message_id: str) -> None:
    raw = (b"From: user@example.test\r\nTo: far@remote.example\r\n"
           b"Subject: quarterly report\r\n\r\nbody\r\n")
    now = dt.datetime.now(dt.UTC)

    async def put() -> None:
        blob_id = await app.runtime.blobs.put(raw)  # type: ignore[attr-defined]
        await app.runtime.store.enqueue([QueueEntry(  # type: ignore[attr-defined]
            0, message_id, USER, "far@remote.example", "remote.example", blob_id, len(raw),
            now, now + dt.timedelta(days=1), 3, "451 4.4.1 remote.example: connection refused")])

    app.call(put())  # type: ignore[attr-defined]


def test_admin_manages_the_server_in_a_browser(web_app: StartWebApp, browser: Browser
                                               ) -> None:
    with DnsTestServer() as dns, web_app(DNS_NAMESERVERS=dns.address) as app:
        dns.add("example.test.", "MX", "10 mail.example.test.")
        dns.add("mail.example.test.", "A", "127.0.0.1")
        queue_message(app, "queued-1")
        with smtplib.SMTP("127.0.0.1", app.port("smtp"), timeout=30) as smtp:  # traffic
            smtp.sendmail("someone@far.example", [USER], b"Subject: hi\r\n\r\nhello\r\n")
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                smtp.sendmail("someone@far.example", ["nobody@example.test"], b"x\r\n")
        web = browser.use(app)
        web.login(ADMIN, PASSWORD)
        web.open("/admin")
        assert "Today" in web.text() and int(web.find("#received").text) >= 1
        assert any(float(bar.get_attribute("height")) > 0 for bar in web.finds("svg.chart rect"))
        web.screenshot("admin-dashboard")

        web.open("/admin/accounts")
        web.find("#new-address").send_keys("dora@example.test")
        web.find("#new-password").send_keys("dora's password")
        web.submit("#create-account button[type=submit]")
        assert "Created dora@example.test." in web.find(".flash").text
        assert web.finds('tr[data-address="dora@example.test"]')
        web.screenshot("admin-accounts")

        web.open("/admin/aliases")
        web.find("#alias-source").send_keys("info@example.test")
        web.find("#alias-target").send_keys("dora@example.test")
        web.submit("#create-alias button[type=submit]")
        assert "Created alias info@example.test → dora@example.test." in web.find(".flash").text

        web.open("/admin/dns?domain=example.test")
        mx = web.find('tr.finding[data-record="MX"]')
        assert mx.get_attribute("data-status") == "ok" and "ok" in mx.get_attribute("class")
        dmarc = web.find('tr.finding[data-record="DMARC"]')
        assert "bad" in dmarc.get_attribute("class") and "_dmarc" in dmarc.text
        web.screenshot("admin-dns")

        web.open("/admin/queue")
        assert "queued-1" in web.text()
        web.screenshot("admin-queue")
        web.submit('tr.queued[data-id="queued-1"] form[action="/admin/queue/delete"] button')
        assert "Deleted queued-1" in web.find(".flash").text
        assert not web.finds('tr.queued[data-id="queued-1"]')
        assert app.call(app.runtime.store.list_queue()) == []
        assert app.call(app.runtime.store.get_account("dora@example.test")) is not None
        assert app.call(app.runtime.store.alias_targets("info@example.test")) == [
            "dora@example.test"]
