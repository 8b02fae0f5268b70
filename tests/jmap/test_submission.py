"""EmailSubmission (RFC 8621 §7; jmap/submission.py, jmap/submissionsend.py) over a real
store and the real submission path: SMTP submission's own receiver (smtp/receive.py) with
app.py's inbound checks and a real queue worker, which DKIM-signs and relays to a loopback
SMTP sink standing in for the Internet; local recipients get the message in their INBOX.
The signature that reaches the sink is verified with dkimpy against the test key."""

from __future__ import annotations

import email
import email.policy
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from postroom.app import inbound_checks
from postroom.checks import Pipeline
from postroom.clock import SystemClock
from postroom.dns.fake import FakeResolver
from postroom.jmap import submissionsend
from postroom.jmap.context import MAIL, SUBMISSION, jmap_account_id
from postroom.mailauth import keys
from postroom.mailauth.dkim import DkimVerdict, verify_dkim
from postroom.outbound.signing import DkimSigner, keys_dir
from postroom.outbound.worker import QueueWorker
from postroom.runtime import Runtime
from postroom.smtp import policy
from postroom.smtp.receive import Receiver
from tests.conftest import make_config
from tests.jmap.httpclient import CORE, JmapClient, basic
from tests.jmap.identitykit import Api, draft
from tests.queue.harness import NoJitter
from tests.support.runtime import open_runtime
from tests.support.server import AppThread
from tests.support.smtpsink import Sink
from tests.web.conftest import USER
from tests.web.mailsink import mail_app, wait_for

__all__ = ["mail_app"]  # the fixture (`sink` comes from tests/conftest.py)

ALICE = "alice@example.test"
BOB = "bob@example.test"
CAROL = "carol@remote.test"
DAVE = "dave@remote.test"


@dataclass
class Setup:
    api: Api
    worker: QueueWorker
    sink: Sink
    resolver: FakeResolver  # publishes the DKIM key

    @property
    def runtime(self) -> Runtime:
        return self.api.runtime


async def open_setup(tmp_path: Path, server_cert: tuple[Path, Path], sink: tuple[Sink, int],
                     **overrides: object) -> AsyncIterator[Setup]:  # fmt: skip
    config = make_config(tmp_path, server_cert, DEFAULT_RELAY_HOST=f"[127.0.0.1]:{sink[1]}",
                         ENABLE_MTA_STS=0, **overrides)
    key = keys.generate_key(keys_dir(config), "example.test", bits=1024)
    resolver = FakeResolver({f"{key.selector}._domainkey.example.test": {
        "TXT": [keys.public_txt_value(key.private_path.read_bytes())]}})
    async with open_runtime(config) as runtime:
        alice = await runtime.store.create_account(ALICE, "not-a-hash")
        await runtime.store.create_account(BOB, "not-a-hash")
        await runtime.store.add_alias("sales@example.test", ALICE)
        worker = QueueWorker(runtime, resolver, SystemClock(), DkimSigner.from_config(config),
                             rng=NoJitter())
        receiver = Receiver(runtime, worker, Pipeline(inbound_checks(runtime)))
        yield Setup(Api(runtime, alice, receiver), worker, sink[0], resolver)


@pytest.fixture
async def setup(tmp_path: Path, server_cert: tuple[Path, Path],
                sink: tuple[Sink, int]) -> AsyncIterator[Setup]:  # fmt: skip
    async for opened in open_setup(tmp_path, server_cert, sink):
        yield opened


async def identity_of(api: Api, address: str = ALICE) -> str:
    listed = (await api.ok("Identity/get"))["list"]
    return str(next(one["id"] for one in listed if one["email"] == address))


async def inbox(runtime: Runtime, address: str) -> list[email.message.EmailMessage]:
    account = await runtime.store.get_account(address)
    assert account is not None
    box = await runtime.store.get_mailbox(account.id, "INBOX")
    assert box is not None
    found = []
    for row in await runtime.store.list_messages(box.id):
        parsed = email.message_from_bytes(await runtime.blobs.read(row.blob_id),
                                          policy=email.policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        found.append(parsed)
    return found


async def submit(api: Api, record: dict[str, Any], **arguments: Any) -> list[list[Any]]:
    return await api.responses([["EmailSubmission/set", {
        "accountId": api.account_id, "create": {"k1": record}, **arguments}, "s"]])


def test_the_recipient_limit_is_smtp_submissions() -> None:
    assert submissionsend.MAX_RECIPIENTS == policy.MAX_RECIPIENTS


async def test_a_submission_is_delivered_signed_and_moved_to_sent(setup: Setup) -> None:
    api = setup.api
    email_id = await api.store_message(draft(f"Alice <{ALICE}>", f"{BOB}, {CAROL}",
                                             bcc=DAVE, subject="plans"))
    drafts, sent = await api.mailbox_id("Drafts"), await api.mailbox_id("Sent")
    answers = await submit(api, {"identityId": await identity_of(api), "emailId": email_id},
                           onSuccessUpdateEmail={"#k1": {
                               f"mailboxIds/{drafts}": None, f"mailboxIds/{sent}": True,
                               "keywords/$draft": None}})
    (name, created, call_id), (implicit, email_set, implicit_id) = answers
    assert (name, implicit, call_id, implicit_id) == ("EmailSubmission/set", "Email/set",
                                                      "s", "s")
    made = created["created"]["k1"]
    assert made["undoStatus"] == "final" and made["id"].startswith("S")
    assert made["threadId"] == "T" + email_id and made["deliveryStatus"] is None
    assert email_set["updated"] == {email_id: None}
    (moved,) = (await api.ok("Email/get", ids=[email_id],
                             properties=["mailboxIds", "keywords"]))["list"]
    assert moved["mailboxIds"] == {sent: True} and moved["keywords"] == {}
    (local,) = await inbox(setup.runtime, BOB)
    assert local["Subject"] == "plans" and local["Bcc"] is None
    assert local["Return-Path"] == f"<{ALICE}>" and "with ESMTPA" in local["Received"]
    report = await setup.worker.run_once()
    assert len(report.delivered) == 2
    (sender, recipients, content), = setup.sink.received
    assert (sender, sorted(recipients)) == (ALICE, [CAROL, DAVE])
    assert b"\nBcc:" not in content and b"dave" not in content.split(b"\r\n\r\n")[0]
    assert content.startswith(b"DKIM-Signature:")
    results = await verify_dkim(setup.resolver, content)
    assert [(one.result, one.domain) for one in results] == [(DkimVerdict.PASS,
                                                              "example.test")]


async def test_get_query_and_changes_of_submissions(setup: Setup) -> None:
    api = setup.api
    first = (await api.ok("EmailSubmission/get", ids=None))["state"]
    alice, sales = await identity_of(api), await identity_of(api, "sales@example.test")
    ids = []
    for n, (identity, sender) in enumerate(((alice, ALICE), (sales, "sales@example.test"))):
        email_id = await api.store_message(draft(sender, BOB, subject=f"m{n}"))
        created = (await submit(api, {"identityId": identity, "emailId": email_id}))[0][1]
        ids.append((created["created"]["k1"]["id"], email_id, identity))
    (one, one_email, _), (two, two_email, _) = ids
    listed = (await api.ok("EmailSubmission/get", ids=[one, "S999"]))
    (record,) = listed["list"]
    assert record["envelope"] == {"mailFrom": {"email": ALICE, "parameters": None},
                                  "rcptTo": [{"email": BOB, "parameters": None}]}
    assert record["emailId"] == one_email and record["identityId"] == alice
    assert (record["dsnBlobIds"], record["mdnBlobIds"]) == ([], [])
    assert listed["notFound"] == ["S999"]
    query = await api.ok("EmailSubmission/query", calculateTotal=True,
                         sort=[{"property": "sentAt", "isAscending": False}])
    assert query["ids"] == [two, one] and query["total"] == 2
    assert query["canCalculateChanges"] is False
    for condition, expected in (({"identityIds": [sales]}, [two]),
                                ({"emailIds": [one_email]}, [one]),
                                ({"threadIds": ["T" + two_email]}, [two]),
                                ({"undoStatus": "final"}, [one, two]),
                                ({"undoStatus": "pending"}, []),
                                ({"before": "2000-01-01T00:00:00Z"}, []),
                                ({"after": "2000-01-01T00:00:00Z"}, [one, two]),
                                ({"operator": "NOT", "conditions": [
                                    {"identityIds": [sales]}]}, [one])):
        response = await api.ok("EmailSubmission/query", filter=condition)
        assert response["ids"] == expected, condition
    by_email = await api.ok("EmailSubmission/query", sort=[{"property": "emailId"}])
    assert by_email["ids"] == [s for s, e, _ in sorted(ids, key=lambda x: x[1])]
    assert await api.error("EmailSubmission/query",
                           filter={"subject": "x"}) == "unsupportedFilter"
    assert await api.error("EmailSubmission/query",
                           sort=[{"property": "size"}]) == "unsupportedSort"
    assert await api.error("EmailSubmission/queryChanges",
                           sinceQueryState=query["queryState"]) == "cannotCalculateChanges"
    changes = await api.ok("EmailSubmission/changes", sinceState=first)
    assert changes["created"] == [one, two] and changes["destroyed"] == []
    set_response = await api.ok("EmailSubmission/set", update={
        one: {"undoStatus": "canceled"}, two: {"emailId": one_email}},
        destroy=[two, "S999"])
    assert set_response["notUpdated"][one]["type"] == "cannotUnsend"
    assert set_response["notUpdated"][two]["properties"] == ["emailId"]
    assert set_response["destroyed"] == [two]
    assert set_response["notDestroyed"]["S999"]["type"] == "notFound"
    later = await api.ok("EmailSubmission/changes", sinceState=changes["newState"])
    assert later["destroyed"] == [two]
    assert await api.error("EmailSubmission/changes", sinceState="x") == "cannotCalculateChanges"
    assert await api.error("EmailSubmission/set", ifInState=first,
                           destroy=[one]) == "stateMismatch"


async def test_on_success_destroy_email(setup: Setup) -> None:
    api = setup.api
    email_id = await api.store_message(draft(ALICE, BOB, subject="bye"))
    answers = await submit(api, {"identityId": await identity_of(api), "emailId": email_id},
                           onSuccessDestroyEmail=["#k1", "#other"])
    assert [answer[0] for answer in answers] == ["EmailSubmission/set", "Email/set"]
    assert answers[1][1]["destroyed"] == [email_id]
    assert (await api.ok("Email/get", ids=[email_id]))["notFound"] == [email_id]
    assert len(await inbox(setup.runtime, BOB)) == 1
    failed = await submit(api, {"identityId": await identity_of(api), "emailId": email_id},
                          onSuccessDestroyEmail=["#k1"])
    assert [answer[0] for answer in failed] == ["EmailSubmission/set"]  # nothing succeeded
    assert failed[0][1]["notCreated"]["k1"]["properties"] == ["emailId"]


async def test_spoof_protection(setup: Setup) -> None:
    api = setup.api
    alice = await identity_of(api)
    cases = [  # (From, envelope mailFrom or None, the SetError)
        (BOB, None, "forbiddenMailFrom"),  # derived from From: not alice's identity
        (BOB, ALICE, "forbiddenFrom"),
        ("sales@example.test", ALICE, "forbiddenFrom"),  # owned, but not this identity
        (ALICE, BOB, "forbiddenMailFrom"),
        (ALICE, "", "forbiddenMailFrom"),  # the null sender is the server's
        (f"{ALICE}, {BOB}", ALICE, "forbiddenFrom"),
    ]
    for sender, mail_from, expected in cases:
        record: dict[str, Any] = {"identityId": alice,
                                  "emailId": await api.store_message(draft(sender, BOB))}
        if mail_from is not None:
            record["envelope"] = {"mailFrom": {"email": mail_from},
                                  "rcptTo": [{"email": BOB, "parameters": None}]}
        error = (await submit(api, record))[0][1]["notCreated"]["k1"]
        assert error["type"] == expected, (sender, mail_from, error)
    sender_field = await api.store_message(draft(ALICE, BOB, extra=f"Sender: {BOB}"))
    error = (await submit(api, {"identityId": alice, "emailId": sender_field}))[0][1]
    assert error["notCreated"]["k1"]["type"] == "forbiddenMailFrom"  # Sender is mailFrom
    reply_to = await api.store_message(draft(ALICE, BOB, extra=f"Reply-To: {BOB}"))
    error = (await submit(api, {"identityId": alice, "emailId": reply_to}))[0][1]
    assert error["notCreated"]["k1"]["type"] == "forbiddenToSend"  # the receiver's check
    assert "Reply-To" in error["notCreated"]["k1"]["description"]
    assert await inbox(setup.runtime, BOB) == []


async def test_without_spoof_protection_any_sender_goes(
        tmp_path: Path, server_cert: tuple[Path, Path], sink: tuple[Sink, int]) -> None:
    async for setup in open_setup(tmp_path, server_cert, sink, SPOOF_PROTECTION=0):
        api = setup.api
        email_id = await api.store_message(draft(f"Bob <{BOB}>", CAROL))
        answer = (await submit(api, {"identityId": await identity_of(api),
                                     "emailId": email_id}))[0][1]
        assert answer["created"], answer
        await setup.worker.run_once()
        assert setup.sink.received[0][:2] == (BOB, [CAROL])


async def test_recipient_and_email_errors(setup: Setup) -> None:
    api = setup.api
    alice = await identity_of(api)

    async def error(record: dict[str, Any]) -> dict[str, Any]:
        record.setdefault("identityId", alice)
        return dict((await submit(api, record))[0][1]["notCreated"]["k1"])

    many = ", ".join(f"user{n}@remote.test" for n in range(policy.MAX_RECIPIENTS + 1))
    found = await error({"emailId": await api.store_message(draft(ALICE, many))})
    assert (found["type"], found["maxRecipients"]) == ("tooManyRecipients", 100)
    found = await error({"emailId": await api.store_message(draft(ALICE))})
    assert found["type"] == "noRecipients"
    found = await error({"emailId": await api.store_message(
        draft(ALICE, f"nobody@example.test, {BOB}, not-an-address"))})
    assert found["type"] == "invalidRecipients"
    assert found["invalidRecipients"] == ["not-an-address"]
    found = await error({"emailId": await api.store_message(
        draft(ALICE, f"nobody@example.test, {BOB}"))})
    assert (found["type"], found["invalidRecipients"]) == ("invalidRecipients",
                                                            ["nobody@example.test"])
    no_from = await api.store_message(b"To: bob@example.test\r\nSubject: x\r\n\r\nbody\r\n")
    found = await error({"emailId": no_from})
    assert (found["type"], found["properties"]) == ("invalidEmail", ["from"])
    for email_id in ("nonexistent", "#nope", "bad id!"):
        found = await error({"emailId": email_id})
        assert (found["type"], found["properties"]) == ("invalidProperties", ["emailId"])
    valid = await api.store_message(draft(ALICE, BOB))
    for identity in ("I999", "#nope", None):
        found = await error({"emailId": valid, "identityId": identity})
        assert found["properties"] == ["identityId"]
    found = await error({"emailId": valid, "sendAt": "2026-01-01T00:00:00Z"})
    assert found["properties"] == ["sendAt"]
    found = await error({"emailId": valid, "envelope": {
        "mailFrom": {"email": ALICE, "parameters": {"HOLDFOR": "60"}}, "rcptTo": []}})
    assert found["properties"] == ["envelope"]
    found = await error({"emailId": valid, "envelope": {"mailFrom": {"email": ALICE},
                                                        "rcptTo": []}})
    assert found["type"] == "noRecipients"
    assert await inbox(setup.runtime, BOB) == []
    assert await api.error("EmailSubmission/set", onSuccessDestroyEmail="x") \
        == "invalidArguments"


async def test_too_large(tmp_path: Path, server_cert: tuple[Path, Path],
                         sink: tuple[Sink, int]) -> None:
    async for setup in open_setup(tmp_path, server_cert, sink,
                                  POSTFIX_MESSAGE_SIZE_LIMIT=2000):
        api = setup.api
        email_id = await api.store_message(draft(ALICE, BOB, body="x" * 3000))
        found = (await submit(api, {"identityId": await identity_of(api),
                                    "emailId": email_id}))[0][1]["notCreated"]["k1"]
        assert (found["type"], found["maxSize"]) == ("tooLarge", 2000)


async def test_envelope_given_and_a_catch_all_identity(
        tmp_path: Path, server_cert: tuple[Path, Path], sink: tuple[Sink, int]) -> None:
    async for setup in open_setup(tmp_path, server_cert, sink):
        api = setup.api
        await api.store.add_alias("@alice.test", ALICE)
        wildcard = await identity_of(api, "*@alice.test")
        email_id = await api.store_message(draft("anything@alice.test", CAROL))
        answer = (await submit(api, {"identityId": wildcard, "emailId": email_id,
                                     "envelope": {"mailFrom": {"email": "x@alice.test"},
                                                  "rcptTo": [{"email": BOB}]}}))[0][1]
        assert answer["created"], answer
        (got,) = await inbox(setup.runtime, BOB)  # the envelope, not the To field
        assert got["Return-Path"] == "<x@alice.test>"
        assert await setup.worker.run_once() is not None and setup.sink.received == []


def test_submitting_over_https_through_the_apps_queue(mail_app: AppThread, sink: tuple[Sink, int],
                                                      client_tls: ssl.SSLContext) -> None:
    key = keys.generate_key(keys_dir(mail_app.runtime.config), "example.test", bits=1024)
    account = mail_app.call(mail_app.runtime.store.get_account(USER))
    assert account is not None
    boxes = {box.name: box.object_id
             for box in mail_app.call(mail_app.runtime.store.list_mailboxes(account.id))}
    account_id = jmap_account_id(account.id)
    client = JmapClient(mail_app, client_tls, basic())
    using = [CORE, MAIL, SUBMISSION]
    raw = draft(f"User <{USER}>", CAROL, bcc=DAVE, subject="over https")
    upload = client.request("POST", f"/jmap/upload/{account_id}/", raw,
                            {"Content-Type": "message/rfc822"})
    assert upload.status == 201, upload.body
    first = client.api([
        ["Email/import", {"accountId": account_id, "emails": {"d": {
            "blobId": upload.json()["blobId"], "mailboxIds": {boxes["Drafts"]: True},
            "keywords": {"$draft": True}}}}, "0"],
        ["Identity/get", {"accountId": account_id}, "1"]], using=using).json()
    imported, identity = (answer[1] for answer in first["methodResponses"])
    email_id = imported["created"]["d"]["id"]
    sent = client.api([["EmailSubmission/set", {
        "accountId": account_id,
        "create": {"s": {"identityId": identity["list"][0]["id"], "emailId": email_id}},
        "onSuccessUpdateEmail": {"#s": {f"mailboxIds/{boxes['Drafts']}": None,
                                        f"mailboxIds/{boxes['Sent']}": True,
                                        "keywords/$draft": None}}}, "2"]],
        using=using).json()["methodResponses"]
    assert [answer[0] for answer in sent] == ["EmailSubmission/set", "Email/set"], sent
    assert sent[1][1]["updated"] == {email_id: None}
    wait_for(lambda: len(sink[0].received) == 1)
    sender, recipients, content = sink[0].received[0]
    assert (sender, sorted(recipients)) == (USER, [CAROL, DAVE])
    assert b"Bcc:" not in content.split(b"\r\n\r\n")[0]
    resolver = FakeResolver({f"{key.selector}._domainkey.example.test": {
        "TXT": [keys.public_txt_value(key.private_path.read_bytes())]}})
    results = mail_app.call(verify_dkim(resolver, content))
    assert [one.result for one in results] == [DkimVerdict.PASS]
