"""What an account's user sends teaches its junk filter who is known-good (issue 18).

Owns `SentMailCheck`: after DATA on a submission port, with a login, every recipient of
the message is remembered as a known-good sender of the login's account (mox's rule:
someone you write to is someone whose answers you want). It never refuses or changes
anything; a failure to remember is logged and the message goes on.

The recorder is a Protocol (`SentMailRecorder`: junk/service.py's `JunkFilter`) so checks/
does not import junk/.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from postroom.checks.api import ACCEPT, ReceivedMessage, Verdict
from postroom.store.api import Store

log = logging.getLogger("postroom.checks")

MAX_NOTED = 100  # recipients remembered per message (smtp/policy.py MAX_RECIPIENTS)


class SentMailRecorder(Protocol):
    async def note_sent(self, account_id: int, recipients: list[str]) -> None: ...


@dataclass(frozen=True, slots=True)
class SentMailCheck:
    store: Store
    recorder: SentMailRecorder
    name: str = "sent-mail"
    timeout: float | None = 10.0
    fail_open: bool = True  # remembering is a nicety: never holds mail up

    async def on_message(self, message: ReceivedMessage) -> Verdict:
        client = message.client
        if not (client.is_submission and client.auth_user):
            return ACCEPT
        account = await self.store.get_account(client.auth_user)
        if account is None:  # a login that is an alias of no account of its own
            return ACCEPT
        recipients = [recipient.address.lower() for recipient in message.recipients]
        await self.recorder.note_sent(account.id, recipients[:MAX_NOTED])
        return ACCEPT
