"""SPOOF_PROTECTION on submission: an authenticated user sends only as addresses it owns.

Owns `SenderOwnership`: the envelope check the session runs at MAIL and the after-DATA
`MessageCheck` (receive.py) for the From, Sender and Reply-To fields, read by the one
address parser (mail/originators.py via headerscan.py) that IMAP ENVELOPE uses too, so
what a recipient's client shows is what was checked. An address is owned by a login when
recipient resolution (delivery/recipients.py) of that address reaches the login's
account: the account itself, an alias with the account among its targets (at any depth),
or a catch-all of the domain when no account or alias shadows it. That is docker-
mailserver's `smtpd_sender_login_maps` (accounts plus the virtual alias map) read by
Postfix's `reject_sender_login_mismatch`.

Decisions: the null reverse-path is refused for users (bounces are the server's to send;
a user-made `MAIL FROM:<>` only serves to hide the sender); every address of every From
and Sender field must be owned (clients show them all as the author); a Reply-To address
in a local domain must be owned too (a reply must not land in another user's mailbox),
one in any other domain is allowed, and one without a usable domain is refused (a client
may complete it with a local domain); a field that cannot be parsed whole is refused
(550 5.6.0), never read as absent; a field with no mailbox at all (an empty RFC 6854
group) names nobody and passes. Invariant: `SPOOF_PROTECTION=0` turns these checks off.
"""

from __future__ import annotations

import logging

from postroom.config import Config
from postroom.delivery.recipients import resolve_recipient
from postroom.smtp import replies
from postroom.smtp.headerscan import Author, authors_of
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
        """After DATA: every From: and Sender: address, and every Reply-To: address in a
        local domain, must be owned by the logged-in user."""
        login = message.client.auth_user
        if not self._config.spoof_protection or not login:
            return None
        header = message.header
        fields = {"From": header.from_fields, "Sender": header.sender_fields,
                  "Reply-To": header.reply_to_fields}
        authors: dict[str, list[Author]] = {}
        for name, parsed in fields.items():
            found = authors_of(parsed)
            if found is None:
                log.info("queue_id=%s user=%s refused: %s header field cannot be parsed",
                         message.queue_id, login, name)
                return replies.header_unparsable(name)
            authors[name] = list(dict.fromkeys(found))
        for name in ("From", "Sender"):
            for author in authors[name]:
                if not await self.owns(login, author.address):
                    return self._refuse(message, login, name, author)
        for author in authors["Reply-To"]:
            if not await self._may_take_replies(login, author):
                return self._refuse(message, login, "Reply-To", author)
        return None

    async def _may_take_replies(self, login: str, author: Author) -> bool:
        """A Reply-To address: owned, or in a DNS domain that is not one of ours."""
        if not author.domain:
            return False
        resolution = await resolve_recipient(self._store, author.address)
        return resolution.is_remote or any(
            target.address == login for target in resolution.local)

    @staticmethod
    def _refuse(message: ReceivedMessage, login: str, name: str, author: Author) -> Reply:
        shown = author.written or author.address
        log.info("queue_id=%s user=%s refused %s <%s>: not owned", message.queue_id, login,
                 name, shown)
        if name == "From":
            return replies.from_not_owned(shown, login)
        return replies.header_address_not_owned(name, shown, login)
