"""/metrics, /healthz and /readyz (issue 21) over the real web listener: the exposition
parsed with prometheus_client's own parser, before and after real SMTP, IMAP and POP3
traffic (the counters move), who may read it, and readiness during a drain."""

from __future__ import annotations

import datetime as dt
import imaplib
import poplib
import smtplib
import ssl

import pytest
from prometheus_client.parser import text_string_to_metric_families

from postroom.store.api import QueueEntry
from tests.web.conftest import ADMIN, PASSWORD, USER, StartWebApp, WebClient, login

pytestmark = pytest.mark.timeout(90)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
MESSAGE = (f"From: <sender@remote.example>\r\nTo: <{USER}>\r\nSubject: metrics\r\n"
           "Message-ID: <metrics@remote.example>\r\n\r\nhello\r\n")


def scrape(client: WebClient) -> Samples:
    answer = client.get("/metrics")
    assert answer.status == 200, answer.body[:300]
    assert answer.headers["Content-Type"].startswith("text/plain; version=")
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(answer.body)
            for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def test_metrics_move_with_real_traffic(web_app: StartWebApp,
                                        client_tls: ssl.SSLContext) -> None:
    with web_app(ENABLE_POP3=1) as app:
        client = WebClient(app, client_tls)
        before = scrape(client)
        assert value(before, "postroom_queue_size") == 0
        with smtplib.SMTP("127.0.0.1", app.port("smtp"), timeout=30) as smtp:
            smtp.ehlo("client.remote.example")
            smtp.sendmail("sender@remote.example", [USER], MESSAGE)
            code, _ = smtp.rcpt("nobody@example.test")  # inside a new transaction
            assert code == 503  # no MAIL yet: a protocol error, counted as 5.5.1
            smtp.mail("sender@remote.example")
            assert smtp.rcpt("nobody@example.test")[0] == 550
            smtp.rset()
        imap = imaplib.IMAP4_SSL("127.0.0.1", app.port("imaps"), ssl_context=client_tls,
                                 timeout=30)
        with pytest.raises(imaplib.IMAP4.error):
            imap.login(USER, "wrong password")
        imap.login(USER, PASSWORD)
        imap.select("INBOX")
        imap.fetch("1", "(BODY.PEEK[])")
        imap.logout()
        pop = poplib.POP3_SSL("127.0.0.1", app.port("pop3s"), context=client_tls, timeout=30)
        pop.user(USER)
        pop.pass_(PASSWORD)
        pop.quit()
        after = scrape(client)

    assert moved(before, after, "postroom_connections_total", listener="smtp") == 1
    assert moved(before, after, "postroom_connections_total", listener="imaps") == 1
    assert moved(before, after, "postroom_connections_total", listener="pop3s") == 1
    assert moved(before, after, "postroom_messages_received_total", mode="mx") == 1
    assert moved(before, after, "postroom_smtp_transaction_seconds_count", mode="mx") == 1
    assert moved(before, after, "postroom_smtp_rejections_total", code="550",
                 status="5.1.1") == 1
    assert moved(before, after, "postroom_smtp_rejections_total", code="503",
                 status="5.5.1") == 1
    assert moved(before, after, "postroom_login_failures_total") == 1
    verdicts = {key: count - before.get(key, 0.0) for key, count in after.items()
                if key[0] == "postroom_filter_verdicts_total"}
    assert sum(verdicts.values()) >= 1  # the inbound checks judged the message
    for command in ("LOGIN", "SELECT", "FETCH"):
        assert moved(before, after, "postroom_imap_command_seconds_count",
                     command=command) >= 1, command
    # The sessions that were open while scraping have ended (SMTP, IMAP, POP3).
    assert value(after, "postroom_open_connections", listener="smtp") == value(
        before, "postroom_open_connections", listener="smtp")
    assert value(after, "process_open_fds") > 0  # the process collector is there


def test_queue_gauges_come_from_the_store(web_app: StartWebApp,
                                          client_tls: ssl.SSLContext) -> None:
    with web_app() as app:
        created = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
        later = created + dt.timedelta(days=1)  # not due: the worker leaves them alone

        async def enqueue() -> None:
            blob_id = await app.runtime.blobs.put(b"Subject: queued\r\n\r\nbody\r\n")
            await app.runtime.store.enqueue([
                QueueEntry(0, f"m{i}", USER, f"r{i}@remote.example", "remote.example",
                           blob_id, 30, created, later, 0, "") for i in range(3)])

        app.call(enqueue())
        samples = scrape(WebClient(app, client_tls))
    assert value(samples, "postroom_queue_size") == 3
    assert 2 * 3600 - 60 < value(samples, "postroom_queue_oldest_age_seconds") < 3 * 3600


def test_metrics_outside_the_allowed_networks_need_an_admin(
        web_app: StartWebApp, client_tls: ssl.SSLContext) -> None:
    with web_app(WEB_METRICS_NETWORKS="192.0.2.0/24") as app:
        anonymous = WebClient(app, client_tls)
        assert anonymous.get("/metrics").status == 403
        user = WebClient(app, client_tls)
        assert login(user, USER).status == 303
        assert user.get("/metrics").status == 403
        admin = WebClient(app, client_tls)
        assert login(admin, ADMIN).status == 303
        assert "postroom_connections_total" in admin.get("/metrics").body


def test_metrics_from_trusted_networks(web_app: StartWebApp,
                                       client_tls: ssl.SSLContext) -> None:
    with web_app(WEB_METRICS_NETWORKS="192.0.2.0/24", TRUSTED_NETWORKS="127.0.0.0/8") as app:
        assert WebClient(app, client_tls).get("/metrics").status == 200


def test_health_and_readiness(web_app: StartWebApp, client_tls: ssl.SSLContext) -> None:
    with web_app() as app:
        client = WebClient(app, client_tls)
        health = client.get("/healthz")
        assert (health.status, health.body) == (200, "ok\n")
        ready = client.get("/readyz")
        assert (ready.status, ready.body) == (200, "ready\n")

        async def drain() -> None:
            app.runtime.shutting_down.set()  # what SIGTERM does first

        app.call(drain())
        draining = client.get("/readyz")
        assert draining.status == 503 and "draining" in draining.body
        assert client.get("/healthz").status == 200  # alive all the same
