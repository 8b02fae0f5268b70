"""JMAP over HTTP (issue 23, RFC 8620) against a whole App over real HTTPS: the session
resource, the API endpoint and every request-level error, authentication (Basic as IMAP
LOGIN takes it, 401 challenges, bans, never the web cookie), per-account concurrency,
uploads and downloads (whole blobs, message parts, other accounts' blobs refused)."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import email
import imaplib
import json
import re
import ssl
import threading
from typing import Any

import pytest

from postroom.jmap.context import CallContext, JmapContext, jmap_account_id
from postroom.jmap.core import CORE_CAPABILITY, Call, Limits
from postroom.store.api import Account
from tests.jmap.httpclient import CORE, JmapClient, basic
from tests.support.server import AppThread
from tests.web.conftest import ADMIN, PASSWORD, USER, StartWebApp, WebClient, login

PROBLEM = "urn:ietf:params:jmap:error:"
LONG_AGO = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
MESSAGE = (b"From: Ann <ann@example.com>\r\nTo: user@example.test\r\nSubject: parts\r\n"
           b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n"
           b"--zz\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello there\r\n"
           b"--zz\r\nContent-Type: application/octet-stream; name=data.bin\r\n"
           b"Content-Transfer-Encoding: base64\r\n"
           b"Content-Disposition: attachment; filename=data.bin\r\n\r\n"
           + base64.encodebytes(bytes(range(256))).replace(b"\n", b"\r\n")
           + b"--zz--\r\n")


def jmap_context(app: AppThread) -> JmapContext:
    assert app.app.jmap is not None
    return app.app.jmap


def account(app: AppThread, address: str = USER) -> Account:
    found = app.call(app.runtime.store.get_account(address))
    assert found is not None
    return found


def problem_type(reply: Any) -> str:
    assert reply.headers["Content-Type"] == "application/problem+json", reply.body[:200]
    document = reply.json()
    assert document["status"] == reply.status
    return str(document["type"]).removeprefix(PROBLEM)


def test_the_session_resource_names_the_account_and_the_urls(
        web_app: StartWebApp, client_tls: ssl.SSLContext) -> None:
    with web_app() as app:
        reply = JmapClient(app, client_tls, basic()).session()
        assert reply.status == 200 and reply.headers["Content-Type"] == "application/json"
        session = reply.json()
        account_id = jmap_account_id(account(app).id)
        assert account_id[0] == "a" and int(account_id[1:], 36) == account(app).id
        assert session["username"] == USER
        assert list(session["accounts"]) == [account_id]
        assert session["accounts"][account_id]["name"] == USER
        assert session["accounts"][account_id]["isPersonal"] is True
        # Every capability of a registered method, websocket last (push is served).
        assert list(session["capabilities"]) == [
            CORE, "urn:ietf:params:jmap:mail", "urn:ietf:params:jmap:submission",
            "urn:ietf:params:jmap:vacationresponse", "urn:ietf:params:jmap:websocket"]
        core = session["capabilities"][CORE]
        assert core["maxSizeRequest"] == Limits().max_size_request
        assert core["maxConcurrentRequests"] == Limits().max_concurrent_requests
        origin = f"https://127.0.0.1:{app.port('web')}"
        assert session["apiUrl"] == origin + "/jmap/api/"
        assert session["uploadUrl"] == origin + "/jmap/upload/{accountId}/"
        assert session["downloadUrl"] == (origin + "/jmap/download/{accountId}/{blobId}/"
                                          "{name}?accept={type}")
        assert session["eventSourceUrl"].startswith(origin + "/jmap/eventsource/")
        assert re.fullmatch(r"[0-9a-f]{24}", session["state"])
        assert session["primaryAccounts"]["urn:ietf:params:jmap:mail"] == account_id
        mail = session["accounts"][account_id]["accountCapabilities"][
            "urn:ietf:params:jmap:mail"]
        assert mail["maxSizeMailboxName"] == 255
        assert "subject" in mail["emailQuerySortOptions"]
        # A capability comes with a method only: one more method, one more capability.
        jmap_context(app).registry.register("Test/echo", "urn:ietf:params:jmap:test",
                                            _echo)
        more = JmapClient(app, client_tls, basic()).session().json()
        assert "urn:ietf:params:jmap:test" in more["capabilities"]
        assert more["state"] != session["state"]


async def _echo(call: Call[CallContext]) -> list[tuple[str, dict[str, Any]]]:
    return [(call.name, {"accountId": call.context.account_id})]


def test_core_echo_round_trip_and_method_errors(web_app: StartWebApp,
                                                client_tls: ssl.SSLContext) -> None:
    with web_app() as app:
        client = JmapClient(app, client_tls, basic())
        state = client.session().json()["state"]
        reply = client.api([["Core/echo", {"hello": True, "n": [1, 2]}, "c1"],
                            ["Core/echo", {"#again": {"resultOf": "c1", "name": "Core/echo",
                                                      "path": "/n/1"}}, "c2"],
                            ["Nope/get", {}, "c3"]])
        assert reply.status == 200 and reply.headers["Content-Type"] == "application/json"
        answer = reply.json()
        assert answer["methodResponses"] == [
            ["Core/echo", {"hello": True, "n": [1, 2]}, "c1"],
            ["Core/echo", {"again": 2}, "c2"],
            ["error", {"type": "unknownMethod", "description": "no method Nope/get"}, "c3"]]
        assert answer["sessionState"] == state
        assert "createdIds" not in answer
        # No CSRF token, no cookie: the header is the whole credential.
        assert "set-cookie" not in {name.lower() for name in reply.headers}


def test_every_request_level_error(web_app: StartWebApp, client_tls: ssl.SSLContext) -> None:
    with web_app() as app:
        client = JmapClient(app, client_tls, basic())
        headers = {"Content-Type": "application/json"}
        not_json = client.request("POST", "/jmap/api/", b'{"using": [', headers)
        assert not_json.status == 400 and problem_type(not_json) == "notJSON"
        latin = client.request("POST", "/jmap/api/", '{"a": "é"}'.encode("latin-1"), headers)
        assert problem_type(latin) == "notJSON"
        not_request = client.request("POST", "/jmap/api/", b'{"using": "core"}', headers)
        assert not_request.status == 400 and problem_type(not_request) == "notRequest"
        unknown = client.api([["Core/echo", {}, "0"]], using=[CORE, "urn:example:nope"])
        assert unknown.status == 400 and problem_type(unknown) == "unknownCapability"
        calls = [["Core/echo", {}, str(n)] for n in range(Limits().max_calls_in_request + 1)]
        too_many = client.api(calls)
        assert problem_type(too_many) == "limit"
        assert too_many.json()["limit"] == "maxCallsInRequest"
        announced = client.announce("/jmap/api/", Limits().max_size_request + 1, headers)
        assert announced.status == 400 and problem_type(announced) == "limit"
        assert announced.json()["limit"] == "maxSizeRequest"
        # A body that grows past the cap while streaming (chunked, nothing announced).
        jmap_context(app).limits = Limits(max_size_request=70_000)
        streamed = client.request("POST", "/jmap/api/", iter([b" " * 40_000] * 2), headers)
        assert problem_type(streamed) == "limit"
        assert streamed.json()["limit"] == "maxSizeRequest"
        # Over 64 KiB (parsed off the event loop) and still within the cap: fine.
        padded = json.dumps({"using": [CORE], "methodCalls": [["Core/echo", {}, "x"]],
                             "pad": "p" * 66_000}).encode()
        assert client.request("POST", "/jmap/api/", padded, headers).status == 200


def test_max_concurrent_requests_holds_per_account(web_app: StartWebApp,
                                                   client_tls: ssl.SSLContext) -> None:
    with web_app() as app:
        limit = Limits().max_concurrent_requests
        entered, all_in, lock = [0], threading.Event(), threading.Lock()
        release = asyncio.Event()

        async def wait(call: Call[CallContext]) -> list[tuple[str, dict[str, Any]]]:
            with lock:
                entered[0] += 1
                if entered[0] == limit:
                    all_in.set()
            await release.wait()
            return [("Test/wait", {})]

        jmap_context(app).registry.register("Test/wait", CORE_CAPABILITY, wait)
        client = JmapClient(app, client_tls, basic())
        replies: list[int] = []
        threads = [threading.Thread(target=lambda: replies.append(
            client.api([["Test/wait", {}, "w"]]).status)) for _ in range(limit)]
        for thread in threads:
            thread.start()
        try:
            assert all_in.wait(20)
            over = client.api([["Core/echo", {}, "0"]])
            assert over.status == 400 and problem_type(over) == "limit"
            assert over.json()["limit"] == "maxConcurrentRequests"
            other = JmapClient(app, client_tls, basic(ADMIN)).api([["Core/echo", {}, "0"]])
            assert other.status == 200  # another account has its own count
        finally:
            app.loop.call_soon_threadsafe(release.set)
            for thread in threads:
                thread.join(20)
        assert replies == [200] * limit
        assert client.api([["Core/echo", {}, "0"]]).status == 200  # slots given back


def test_credentials_challenges_and_the_login_history(web_app: StartWebApp,
                                                      client_tls: ssl.SSLContext) -> None:
    with web_app(AUTH_BAN_MAX_FAILURES=0) as app:  # bans: the next test
        for authorization in (None, "Digest x", basic(USER, "wrong"), "Basic !!!",
                              "Bearer prt_" + "A" * 43, "Bearer nonsense"):
            reply = JmapClient(app, client_tls, authorization).session()
            assert reply.status == 401, authorization
            challenge = reply.headers["WWW-Authenticate"]
            assert challenge.startswith('Basic realm="postroom"') and "Bearer" in challenge
            assert reply.headers["Content-Type"] == "application/problem+json"
        # IMAP LOGIN's rules: an address in any case spelling, the main password.
        assert JmapClient(app, client_tls, basic(USER.upper())).session().status == 200
        app.call(app.runtime.accounts.set_disabled(USER, True))
        assert JmapClient(app, client_tls, basic()).session().status == 401
        app.call(app.runtime.accounts.set_disabled(USER, False))
        assert JmapClient(app, client_tls, basic()).api([["Core/echo", {}, "0"]]).status == 200
        logins = app.runtime.accounts.logins
        assert logins is not None
        recent = app.call(logins.recent(account(app).id))
        assert any(r.protocol == "jmap" and r.credential == "password" for r in recent)


def test_repeated_failures_ban_the_client_everywhere(web_app: StartWebApp,
                                                     client_tls: ssl.SSLContext) -> None:
    with web_app(AUTH_BAN_MAX_FAILURES=3) as app:
        for authorization in (basic(USER, "wrong"), "Bearer prt_" + "B" * 43,
                              basic(USER, "wrong again")):
            assert JmapClient(app, client_tls, authorization).session().status == 401
        banned = JmapClient(app, client_tls, basic()).session()  # right password, too late
        assert banned.status == 403 and banned.headers["Content-Type"].endswith("json")
        with pytest.raises(imaplib.IMAP4.error, match="too many failed logins"):
            imaplib.IMAP4_SSL("127.0.0.1", app.port("imaps"), ssl_context=client_tls,
                              timeout=30)  # one ban, every protocol: refused at the greeting


def test_jmap_ignores_the_web_session_and_other_sites(web_app: StartWebApp,
                                                      client_tls: ssl.SSLContext) -> None:
    with web_app() as app:
        browser = WebClient(app, client_tls)
        assert login(browser, USER).status == 303
        cookie = "; ".join(f"{k}={v}" for k, v in browser.cookies.items())
        with_cookie = JmapClient(app, client_tls)
        assert with_cookie.request("GET", "/.well-known/jmap",
                                   headers={"Cookie": cookie}).status == 401
        echo = json.dumps({"using": [CORE], "methodCalls": [["Core/echo", {}, "0"]]})
        assert with_cookie.request("POST", "/jmap/api/", echo.encode(),
                                   {"Cookie": cookie}).status == 401
        origin = f"https://127.0.0.1:{app.port('web')}"
        client = JmapClient(app, client_tls, basic())
        same = client.request("POST", "/jmap/api/", echo.encode(), {"Origin": origin})
        assert same.status == 200
        other = client.request("POST", "/jmap/api/", echo.encode(),
                               {"Origin": "https://evil.example"})
        assert other.status == 403


def test_upload_then_download_and_other_accounts_get_404(web_app: StartWebApp,
                                                         client_tls: ssl.SSLContext) -> None:
    with web_app() as app:
        client = JmapClient(app, client_tls, basic())
        mine = jmap_account_id(account(app).id)
        data = bytes(range(256)) * 1000  # over 64 KiB: a blob file on SQLite too
        up = client.request("POST", f"/jmap/upload/{mine}/", data,
                            {"Content-Type": "image/png"})
        assert up.status == 201, up.body
        uploaded = up.json()
        assert uploaded == {"accountId": mine, "blobId": uploaded["blobId"],
                            "type": "image/png", "size": len(data)}
        blob = uploaded["blobId"]
        down = client.request("GET", f"/jmap/download/{mine}/{blob}/pic%20%C3%A9.png"
                                     "?accept=image/png")
        assert down.status == 200 and down.body == data
        assert down.headers["Content-Type"] == "image/png"
        assert down.headers["Cache-Control"] == "private, immutable, max-age=31536000"
        assert down.headers["Content-Disposition"] == (
            "attachment; filename=\"pic _.png\"; filename*=UTF-8''pic%20%C3%A9.png")
        odd = client.request("GET", f"/jmap/download/{mine}/{blob}/x?accept=<script>")
        assert odd.headers["Content-Type"] == "application/octet-stream"
        small = client.request("POST", f"/jmap/upload/{mine}/", b"tiny", {})
        assert small.status == 201 and small.json()["type"] == "application/octet-stream"
        assert client.request("GET", f"/jmap/download/{mine}/{small.json()['blobId']}/t"
                                     "?accept=text/plain").body == b"tiny"
        admin = JmapClient(app, client_tls, basic(ADMIN))
        theirs = jmap_account_id(account(app, ADMIN).id)
        assert admin.request("GET", f"/jmap/download/{theirs}/{blob}/a").status == 404
        assert admin.request("GET", f"/jmap/download/{mine}/{blob}/a").status == 404
        assert admin.request("POST", f"/jmap/upload/{mine}/", b"x").status == 404
        assert client.request("GET", f"/jmap/download/{mine}/{'0' * 32}/a").status == 404


def test_a_message_and_its_parts_download(web_app: StartWebApp,
                                          client_tls: ssl.SSLContext) -> None:
    with web_app() as app:
        imap = imaplib.IMAP4_SSL("127.0.0.1", app.port("imaps"), ssl_context=client_tls,
                                 timeout=30)
        imap.login(USER, PASSWORD)
        assert imap.append("INBOX", None, None, MESSAGE)[0] == "OK"
        imap.logout()
        box = app.call(app.runtime.store.get_mailbox(account(app).id, "INBOX"))
        assert box is not None
        (row,) = app.call(app.runtime.store.list_messages(box.id))
        client = JmapClient(app, client_tls, basic())
        mine = jmap_account_id(account(app).id)
        whole = client.request("GET", f"/jmap/download/{mine}/{row.blob_id}/m.eml"
                                      "?accept=message/rfc822")
        assert whole.status == 200 and whole.body == MESSAGE
        part = client.request("GET", f"/jmap/download/{mine}/{row.blob_id}_2/data.bin")
        assert part.status == 200 and part.body == bytes(range(256))  # decoded
        text = client.request("GET", f"/jmap/download/{mine}/{row.blob_id}_1/t.txt"
                                     "?accept=text/plain;charset=utf-8")
        assert text.body.strip() == b"Hello there"
        assert text.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert email.message_from_bytes(whole.body)["Subject"] == "parts"
        for missing in ("_3", "_2-1", "_0", "_x"):
            assert client.request("GET", f"/jmap/download/{mine}/{row.blob_id}{missing}/a"
                                  ).status == 404
        admin = JmapClient(app, client_tls, basic(ADMIN))
        theirs = jmap_account_id(account(app, ADMIN).id)
        assert admin.request("GET", f"/jmap/download/{theirs}/{row.blob_id}_2/a"
                             ).status == 404


def test_uploads_over_max_size_upload_are_refused(web_app: StartWebApp,
                                                  client_tls: ssl.SSLContext) -> None:
    with web_app() as app:
        client = JmapClient(app, client_tls, basic())
        mine = jmap_account_id(account(app).id)
        announced = client.announce(f"/jmap/upload/{mine}/", Limits().max_size_upload + 1)
        assert announced.status == 413 and problem_type(announced) == "about:blank"
        # Over WEB_MAX_BODY (1 MiB), within maxSizeUpload: JMAP's cap applies, not the web's.
        big = client.request("POST", f"/jmap/upload/{mine}/", b"b" * (1 << 21))
        assert big.status == 201 and big.json()["size"] == 1 << 21
        jmap_context(app).limits = Limits(max_size_upload=100_000)
        streamed = client.request("POST", f"/jmap/upload/{mine}/", iter([b"s" * 60_000] * 2))
        assert streamed.status == 413
        used = app.call(app.runtime.store.jmap_upload_bytes(account(app).id, LONG_AGO))
        assert used == 1 << 21  # the refused one left nothing behind
