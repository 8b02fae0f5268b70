"""SPOOF_PROTECTION on submission: an authenticated user sends only as addresses it owns.

Owns `SenderOwnership`: the envelope check the session runs at MAIL and the after-DATA
`MessageCheck` (receive.py) for the From: header. An address is owned by a login when
recipient resolution (delivery/recipients.py) of that address reaches the login's
account: the account itself, an alias with the account among its targets (at any depth),
or a catch-all of the domain when no account or alias shadows it. That is docker-
mailserver's `smtpd_sender_login_maps` (accounts plus the virtual alias map) read by
Postfix's `reject_sender_login_mismatch`.

Decisions: the null reverse-path is refused for users (bounces are the server's to send;
a user-made `MAIL FROM:<>` only serves to hide the sender); a From field with no mailbox
at all (an empty RFC 6854 group) names nobody and passes; a From address without a usable
domain is not owned. Invariant: `SPOOF_PROTECTION=0` turns both checks off.
"""

from __future__ import annotations

import logging

from postroom.config import Config
from postroom.delivery.recipients import resolve_recipient
from postroom.smtp import replies
from postroom.smtp.headerscan import parse_authors
from postroom.smtp.receive import ReceivedMessage
from postroom.smtp.replies import Reply
from postroom.store.api import Store

log = logging.getLogger("postroom.smtp")


class SenderOwnership:
    def __init__(self, config: Config, store: Store) -> None:
        self._config = config
        self._store = store

    async def owns(self, login: str, address: str) -> bool:
        if not login or not address or "@" not in address:
            return False
        resolution = await resolve_recipient(self._store, address)
        return any(target.address == login for target in resolution.local)

    async def check_envelope(self, login: str, sender: str) -> Reply | None:
        """At MAIL: the reverse-path must be owned by `login` (the session asks only when
        policy.must_own_sender says so)."""
        if await self.owns(login, sender):
            return None
        log.info("user=%s refused sender=<%s>: not owned", login, sender)
        return replies.sender_not_owned(sender, login)

    async def check(self, message: ReceivedMessage) -> Reply | None:
        """After DATA: every From: address must be owned by the logged-in user."""
        login = message.client.auth_user
        if not self._config.spoof_protection or not login:
            return None
        for author in parse_authors(message.header.from_values):
            if not await self.owns(login, author.address):
                log.info("queue_id=%s user=%s refused From <%s>: not owned",
                         message.queue_id, login, author.address)
                return replies.from_not_owned(author.address, login)
        return None
