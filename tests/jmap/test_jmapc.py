"""Issue 23's "done when", driven by a real JMAP client library (jmapc, over requests and
sseclient) against a whole App on 127.0.0.1: list mailboxes, query and fetch Emails, set
keywords, move a message (IMAP then sees it moved), submit an Email (relayed to a
loopback sink, DKIM-signed), and receive a push event when SMTP delivers."""

from __future__ import annotations

import imaplib
import queue
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from jmapc import (
    Client,
    EmailAddress,
    EmailBodyPart,
    EmailBodyValue,
    EmailQueryFilterCondition,
    EmailSubmission,
    Event,
    Mailbox,
    Ref,
)
from jmapc import Email as JmapEmail
from jmapc.methods import (
    EmailGet,
    EmailQuery,
    EmailSet,
    EmailSubmissionSet,
    IdentityGet,
    MailboxGet,
    MailboxSet,
)

from postroom.dns.fake import FakeResolver
from postroom.mailauth import keys
from postroom.mailauth.dkim import DkimVerdict, verify_dkim
from postroom.outbound.signing import keys_dir
from tests.support.server import AppThread
from tests.support.smtpsink import Sink
from tests.web.conftest import PASSWORD, USER
from tests.web.mailsink import mail_app, send_from_outside, wait_for

__all__ = ["mail_app"]  # the fixture (`sink` comes from tests/conftest.py)

FRIEND = "friend@remote.example"


@pytest.fixture
def jmap_client(mail_app: AppThread, trustme_ca: trustme.CA, tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    bundle = tmp_path / "ca.pem"
    trustme_ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))  # requests verifies against it
    client = Client.create_with_password(f"127.0.0.1:{mail_app.port('web')}", USER, PASSWORD)
    yield client
    client.requests_session.close()  # no kept-alive connection for the App to drain


def imap_uids(app: AppThread, tls: ssl.SSLContext, mailbox: str) -> list[bytes]:
    imap = imaplib.IMAP4_SSL("127.0.0.1", app.port("imaps"), ssl_context=tls, timeout=30)
    try:
        imap.login(USER, PASSWORD)
        imap.select(mailbox)
        found = imap.uid("SEARCH", "ALL")[1][0]
        flags = imap.uid("FETCH", "1:*", "(FLAGS)")[1] if found else []
        return [line for line in flags if isinstance(line, bytes)]
    finally:
        imap.logout()


def test_jmapc_reads_flags_and_moves_what_imap_sees(
        mail_app: AppThread, jmap_client: Client, client_tls: ssl.SSLContext) -> None:
    send_from_outside(mail_app, "hello over smtp")
    boxes = jmap_client.request(MailboxGet(ids=None))
    by_role = {box.role: box for box in boxes.data}
    assert by_role["inbox"].name == "INBOX" and by_role["inbox"].total_emails == 1
    wait_for(lambda: bool(jmap_client.request(EmailQuery(
        filter=EmailQueryFilterCondition(in_mailbox=by_role["inbox"].id))).ids))

    _, fetched = jmap_client.request([
        EmailQuery(filter=EmailQueryFilterCondition(in_mailbox=by_role["inbox"].id)),
        EmailGet(ids=Ref("/ids"), properties=["subject", "from", "mailboxIds", "keywords"]),
    ])
    (email,) = fetched.response.data
    assert email.subject == "hello over smtp"
    assert email.mail_from == [EmailAddress(name=None, email=FRIEND)]
    assert email.keywords == {}

    flagged = jmap_client.request(EmailSet(update={email.id: {"keywords/$flagged": True}}))
    assert email.id in (flagged.updated or {})
    assert b"\\Flagged" in imap_uids(mail_app, client_tls, "INBOX")[0]

    made = jmap_client.request(MailboxSet(create={"new": Mailbox(name="Kept")}))
    assert made.created and made.created["new"] is not None
    archive = Mailbox(id=made.created["new"].id, name="Kept")
    moved = jmap_client.request(EmailSet(update={email.id: {"mailboxIds": {archive.id: True}}}))
    assert email.id in (moved.updated or {})
    assert imap_uids(mail_app, client_tls, "INBOX") == []
    (line,) = imap_uids(mail_app, client_tls, archive.name)
    assert b"\\Flagged" in line  # the same message, moved: its keywords went along
    again = jmap_client.request(EmailGet(ids=[email.id], properties=["mailboxIds"]))
    assert again.data[0].mailbox_ids == {archive.id: True}  # MOVE kept the Email's id


def test_jmapc_submits_mail_that_leaves_dkim_signed(
        mail_app: AppThread, sink: tuple[Sink, int], jmap_client: Client) -> None:
    key = keys.generate_key(keys_dir(mail_app.runtime.config), "example.test", bits=1024)
    identity = jmap_client.request(IdentityGet()).data[0]
    assert identity.email == USER
    drafts = next(box for box in jmap_client.request(MailboxGet(ids=None)).data
                  if box.role == "drafts")
    draft = JmapEmail(
        mail_from=[EmailAddress(name="User", email=USER)],
        to=[EmailAddress(name="Friend", email=FRIEND)], subject="sent with jmapc",
        keywords={"$draft": True}, mailbox_ids={drafts.id: True},
        body_values={"text": EmailBodyValue(value="Hello from JMAP.\n")},
        text_body=[EmailBodyPart(part_id="text", type="text/plain")])
    created, submitted = jmap_client.request([
        EmailSet(create={"draft": draft}),
        EmailSubmissionSet(create={"send": EmailSubmission(
            identity_id=identity.id, email_id="#draft")}),
    ])
    assert created.response.created and created.response.created["draft"] is not None
    assert submitted.response.created and submitted.response.created["send"] is not None
    wait_for(lambda: len(sink[0].received) == 1)
    sender, recipients, content = sink[0].received[0]
    assert (sender, recipients) == (USER, [FRIEND])
    assert b"Subject: sent with jmapc" in content
    resolver = FakeResolver({f"{key.selector}._domainkey.example.test": {
        "TXT": [keys.public_txt_value(key.private_path.read_bytes())]}})
    results = mail_app.call(verify_dkim(resolver, content))
    assert [one.result for one in results] == [DkimVerdict.PASS]


def test_jmapc_hears_of_smtp_delivery_by_push(mail_app: AppThread,
                                               jmap_client: Client) -> None:
    account_id = jmap_client.account_id
    events: queue.Queue[Event] = queue.Queue()

    def listen() -> None:
        for event in jmap_client.events:
            events.put(event)
            return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    # The stream is open once the server holds a push subscription for the account.
    wait_for(lambda: len(mail_app.runtime.feed._subscribers) > 0)
    send_from_outside(mail_app, "pushed")
    event = events.get(timeout=30)
    changed = event.data.changed[account_id]
    assert changed.email is not None and changed.mailbox is not None
    listener.join(5)
