"""JMAP push over EventSource (issue 23, RFC 8620 §7.3) against a whole App over real
HTTPS: StateChange events on delivery (through the store as SMTP delivery does it, and
through real SMTP), `types` filtering and EmailDelivery (RFC 8621 §1.5), closeafter=state,
ping events and the clamp of their interval, Last-Event-ID, authentication, the per-account
connection limit, and clean-up when the client leaves or the server shuts down."""

from __future__ import annotations

import smtplib
import ssl

import pytest
from starlette.datastructures import QueryParams

from postroom.jmap import push
from postroom.jmap.context import jmap_account_id
from postroom.jmap.push import (
    DATA_TYPES,
    EventSourceOptions,
    PushGate,
    StateChange,
    parse_event_source_query,
)
from postroom.web import server as web_server
from tests.jmap.httpclient import basic
from tests.jmap.pushclient import (
    EventSource,
    account_of,
    append_own,
    deliver,
    shutdown_tasks,
    subscribers,
    wait_until,
)
from tests.support.server import AppThread
from tests.web.conftest import ADMIN, USER, StartWebApp

# -- pure parts -------------------------------------------------------------------------------


def test_the_query_parameters_and_the_ping_clamp() -> None:
    def parse(query: str) -> EventSourceOptions:
        return parse_event_source_query(QueryParams(query))

    assert parse("types=*&closeafter=no&ping=0") == EventSourceOptions(None, False, 0)
    assert parse("types=Email,%20Mailbox,&closeafter=state&ping=300") == EventSourceOptions(
        frozenset({"Email", "Mailbox"}), True, 300)
    assert parse("ping=1").ping == push.MIN_PING  # clamped up (§7.3 allows a minimum ≤ 30)
    assert parse("ping=86400").ping == push.MAX_PING  # and down (a maximum ≥ 300)
    assert parse("") == EventSourceOptions(None, False, 0)  # lenient defaults
    for bad in ("closeafter=yes", "ping=-1", "ping=ten", "ping=99999999999", "ping=٣"):
        with pytest.raises(ValueError):
            parse(bad)


def test_a_state_change_renders_and_filters() -> None:
    change = StateChange("a1", dict.fromkeys(DATA_TYPES, "s9"))
    assert change.render() == {"@type": "StateChange", "changed": {"a1": {
        "Email": "s9", "Mailbox": "s9", "Thread": "s9", "EmailDelivery": "s9"}}}
    assert change.render(push_state="s9")["pushState"] == "s9"
    mailbox_only = change.only(frozenset({"Mailbox", "Calendar"}))
    assert mailbox_only is not None and dict(mailbox_only.states) == {"Mailbox": "s9"}
    assert change.only(frozenset({"Calendar"})) is None
    assert change.only(None) == change


def test_the_gate_counts_per_account_and_per_client() -> None:
    gate = PushGate(per_account=2, per_client=3)
    first, second = gate.admit(1, "c1"), gate.admit(1, "c1")
    assert first is not None and second is not None
    assert gate.admit(1, "c2") is None  # the account is full
    third = gate.admit(2, "c1")
    assert third is not None
    assert gate.admit(3, "c1") is None  # the client is full
    first.release()
    first.release()  # idempotent
    assert gate.open_count(1) == 1
    assert gate.admit(3, "c1") is not None


# -- over HTTPS ------------------------------------------------------------------------------


def test_a_delivery_pushes_a_state_change(web_app: StartWebApp,
                                          client_tls: ssl.SSLContext) -> None:
    with web_app() as app:
        account = account_of(app)
        stream = EventSource(app, client_tls, basic())
        try:
            assert stream.status == 200
            assert stream.headers["Content-Type"].startswith("text/event-stream")
            assert stream.headers["Cache-Control"] == "no-store"
            before = app.call(app.runtime.store.jmap_state(account.id))
            deliver(app)
            event = stream.next_event()
            assert event is not None
            name, data, event_id = event
            state = app.call(app.runtime.store.jmap_state(account.id))
            assert state != before
            assert name == "state" and event_id == state
            assert data == {"@type": "StateChange", "changed": {jmap_account_id(account.id): {
                "Email": state, "Mailbox": state, "Thread": state, "EmailDelivery": state}}}
        finally:
            stream.close()


def test_real_smtp_delivery_reaches_the_stream(web_app: StartWebApp,
                                               client_tls: ssl.SSLContext) -> None:
    with web_app() as app:
        stream = EventSource(app, client_tls, basic(), "types=EmailDelivery&closeafter=state")
        try:
            with smtplib.SMTP("127.0.0.1", app.port("smtp"), timeout=30) as smtp:
                smtp.sendmail("someone@far.example", [USER], b"Subject: hi\r\n\r\nhello\r\n")
            event = stream.next_event()
            assert event is not None and event[0] == "state"
            assert list(event[1]["changed"][jmap_account_id(account_of(app).id)]) == [
                "EmailDelivery"]
            assert stream.next_event() is None  # closeafter=state: the answer ends
        finally:
            stream.close()


def test_types_filter_and_what_counts_as_a_delivery(web_app: StartWebApp,
                                                    client_tls: ssl.SSLContext) -> None:
    with web_app() as app:
        key = jmap_account_id(account_of(app).id)
        deliveries = EventSource(app, client_tls, basic(), "types=EmailDelivery&closeafter=no")
        everything = EventSource(app, client_tls, basic(), "types=*&closeafter=no")
        mailboxes = EventSource(app, client_tls, basic(), "types=Mailbox,Unknown&ping=0")
        try:
            append_own(app, "Sent")  # the user's own mail: a change, not a delivery
            own = everything.next_event()
            assert own is not None and set(own[1]["changed"][key]) == {
                "Email", "Mailbox", "Thread"}
            shown = mailboxes.next_event()
            assert shown is not None and set(shown[1]["changed"][key]) == {"Mailbox"}
            deliver(app)
            # The first event this stream gets is the delivery's: the append to Sent,
            # filtered out, sent nothing.
            delivered = deliveries.next_event()
            assert delivered is not None and delivered[1]["changed"] == {
                key: {"EmailDelivery": state_of(app)}}
        finally:
            for stream in (deliveries, everything, mailboxes):
                stream.close()


def state_of(app: AppThread) -> str:
    return app.call(app.runtime.store.jmap_state(account_of(app).id))


def test_ping_events_carry_the_interval_past_the_request_deadline(
        web_app: StartWebApp, client_tls: ssl.SSLContext,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(push, "MIN_PING", 1)  # the real clamp (10 s) is tested above
    # The listener's slow-request deadline does not cut a stream that is under way.
    monkeypatch.setattr(web_server, "HEAD_TIMEOUT", 0.2)
    monkeypatch.setattr(web_server, "REQUEST_TIMEOUT", 0.5)
    with web_app() as app:
        stream = EventSource(app, client_tls, basic(), "types=*&closeafter=no&ping=1")
        try:
            event = stream.next_event()  # after a second, past REQUEST_TIMEOUT
            assert event == ("ping", {"interval": 1}, None)
        finally:
            stream.close()


def test_a_missed_change_is_sent_at_once_to_a_reconnecting_client(
        web_app: StartWebApp, client_tls: ssl.SSLContext) -> None:
    with web_app() as app:
        account = account_of(app)
        old = app.call(app.runtime.store.jmap_state(account.id))
        deliver(app)  # while no stream was open
        stream = EventSource(app, client_tls, basic(), "types=Email&closeafter=state",
                             headers={"Last-Event-ID": old})
        try:
            event = stream.next_event()
            new = app.call(app.runtime.store.jmap_state(account.id))
            assert event == ("state", {"@type": "StateChange", "changed": {
                jmap_account_id(account.id): {"Email": new}}}, new)
            assert stream.next_event() is None
        finally:
            stream.close()


def test_refusals_and_the_end_at_shutdown(web_app: StartWebApp, client_tls: ssl.SSLContext) -> None:
    with web_app() as app:
        anonymous = EventSource(app, client_tls, None)
        assert anonymous.status == 401 and "Basic" in anonymous.headers["WWW-Authenticate"]
        anonymous.close()
        wrong = EventSource(app, client_tls, basic(password="nope"))
        assert wrong.status == 401
        wrong.close()
        bad = EventSource(app, client_tls, basic(), "types=*&closeafter=maybe&ping=0")
        assert bad.status == 400 and b"closeafter" in bad.body()
        bad.close()
        other_site = EventSource(app, client_tls, basic(),
                                 headers={"Origin": "https://evil.example"})
        assert other_site.status == 403
        other_site.close()
        assert subscribers(app, account_of(app)) == 0
        # The stream ends when the server shuts down (the listener itself still runs).
        stream = EventSource(app, client_tls, basic())
        try:
            assert stream.status == 200
            app.loop.call_soon_threadsafe(app.runtime.shutting_down.set)
            assert stream.next_event() is None
            assert subscribers(app, account_of(app)) == 0
        finally:
            stream.close()


def test_leaving_clients_and_the_per_account_limit(web_app: StartWebApp,
                                                   client_tls: ssl.SSLContext,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(push, "MAX_PUSH_PER_ACCOUNT", 2)
    with web_app() as app:
        account = account_of(app)
        streams = [EventSource(app, client_tls, basic()) for _ in range(2)]
        try:
            assert [stream.status for stream in streams] == [200, 200]
            assert subscribers(app, account) == 2 and shutdown_tasks(app) == 2
            third = EventSource(app, client_tls, basic())
            assert third.status == 429
            third.close()
            # Another account is not held back by this one's streams.
            admin = EventSource(app, client_tls, basic(ADMIN))
            assert admin.status == 200
            admin.close()
            streams.pop().close()  # the client goes away without a word
            wait_until(lambda: subscribers(app, account) == 1, "the subscription closed")
            wait_until(lambda: shutdown_tasks(app) == 1, "the watch's task ended")
            again = EventSource(app, client_tls, basic())
            assert again.status == 200  # its place was given back
            streams.append(again)
        finally:
            for stream in streams:
                stream.close()
        wait_until(lambda: subscribers(app, account) == 0, "every subscription closed")
        wait_until(lambda: shutdown_tasks(app) == 0, "every watch task ended")
