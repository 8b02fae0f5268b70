"""The harness of test_identities.py, test_submission.py and test_vacation.py: a JMAP
account over a real store (SQLite, or PostgreSQL under POSTROOM_TEST_STORAGE=postgresql),
each request run through `core.parse_request` and `core.run_request` with a real
MethodRegistry holding the Email methods and ours."""

from __future__ import annotations

import datetime as dt
from typing import Any

from postroom.jmap import emails, identities, submission, vacation
from postroom.jmap.context import (
    MAIL,
    SUBMISSION,
    VACATION_RESPONSE,
)
from postroom.jmap.core import CORE_CAPABILITY
from postroom.jmap.submissionsend import MessageAcceptor
from postroom.mail.mimetree import message_meta
from postroom.runtime import Runtime
from postroom.store.api import Account, NewMessage
from tests.jmap.harness import JmapApi

USING = [CORE_CAPABILITY, MAIL, SUBMISSION, VACATION_RESPONSE]
WHEN = dt.datetime(2026, 5, 1, 9, 0, tzinfo=dt.UTC)


class Api(JmapApi):
    """Requests as a client sends them, for one account (Email, Identity, Vacation and,
    with an acceptor, EmailSubmission methods)."""

    def __init__(self, runtime: Runtime, account: Account,
                 acceptor: MessageAcceptor | None = None) -> None:  # fmt: skip
        registers = [emails.register, identities.register, vacation.register]
        if acceptor is not None:
            registers.append(lambda registry: submission.register(registry, acceptor))
        super().__init__(runtime, account, registers, using=USING)

    async def responses(self, calls: list[list[Any]],
                        using: list[str] | None = None) -> list[list[Any]]:  # fmt: skip
        """The methodResponses of one request."""
        return list((await self.request(calls, using=using))["methodResponses"])

    async def set_error(self, name: str, group: str, key: str, **arguments: Any
                        ) -> dict[str, Any]:  # fmt: skip
        """The SetError of `key` in notCreated/notUpdated/notDestroyed (`group`)."""
        response = await self.ok(name, **arguments)
        assert response[group] and key in response[group], response
        return dict(response[group][key])

    async def mailbox_id(self, name: str) -> str:
        box = await self.store.get_mailbox(self.account.id, name)
        assert box is not None, name
        return box.object_id

    async def store_message(self, raw: bytes, mailbox: str = "Drafts",
                            flags: frozenset[str] = frozenset({"\\Draft"})) -> str:
        """A message in one of the account's mailboxes (its MIME tree as meta); the
        Email id."""
        box = await self.store.get_mailbox(self.account.id, mailbox)
        assert box is not None
        blob_id = await self.runtime.blobs.put(raw)
        await self.store.append_message(box.id, NewMessage(blob_id, len(raw), WHEN, flags,
                                                           message_meta(raw)))
        return blob_id


def draft(sender: str, to: str = "", *, cc: str = "", bcc: str = "", subject: str = "hi",
          extra: str = "", body: str = "Hello there") -> bytes:
    lines = [f"From: {sender}", f"Subject: {subject}", "Date: Fri, 01 May 2026 08:00:00 +0000",
             "Message-ID: <" + subject.replace(" ", "-") + "@example.test>"]
    lines += [f"{name}: {value}" for name, value in (("To", to), ("Cc", cc), ("Bcc", bcc))
              if value]
    if extra:
        lines.append(extra)
    return ("\r\n".join(lines) + "\r\n\r\n" + body + "\r\n").encode()
