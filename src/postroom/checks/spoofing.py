"""SPOOF_PROTECTION on submission: an authenticated user sends only as addresses it owns.

Owns `SpoofingCheck`: at MAIL the reverse-path, after DATA the From, Sender and Reply-To
fields, read by the one address parser (mail/originators.py via mailauth/headerscan.py)
that IMAP ENVELOPE uses too, so what a recipient's client shows is what was checked. An
address is owned by a login when recipient resolution (delivery/recipients.py) of that
address reaches the login's account: the account itself, an alias with the account among
its targets (at any depth), or a catch-all of the domain when no account or alias
shadows it. That is docker-mailserver's `smtpd_sender_login_maps` (accounts plus the
virtual alias map) read by Postfix's `reject_sender_login_mismatch`.

Decisions: the null reverse-path is refused for users (bounces are the server's to send;
a user-made `MAIL FROM:<>` only serves to hide the sender); every address of every From
and Sender field must be owned (clients show them all as the author); a Reply-To address
in a local domain must be owned too (a reply must not land in another user's mailbox),
one in any other domain is allowed, and one without a usable domain is refused (a client
may complete it with a local domain); a field that cannot be parsed whole is refused
(550 5.6.0), never read as absent; a field with no mailbox at all (an empty RFC 6854
group) names nobody and passes. Invariant: `SPOOF_PROTECTION=0` turns these checks off;
they apply to authenticated submission only (port 25 has no AUTH).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from postroom.checks import replies
from postroom.checks.api import ACCEPT, ClientInfo, ReceivedMessage, Verdict, refuse
from postroom.config import Config
from postroom.delivery.recipients import resolve_recipient
from postroom.mailauth.headerscan import Author, authors_of
from postroom.store.api import Directory

log = logging.getLogger("postroom.checks")


@dataclass(frozen=True, slots=True)
class SpoofingCheck:
    config: Config
    store: Directory
    name: str = "spoofing"
    timeout: float | None = None
    fail_open: bool = False

    def _applies(self, client: ClientInfo) -> bool:
        return (self.config.spoof_protection and client.is_submission
                and bool(client.auth_user))

    async def owns(self, login: str, address: str) -> bool:
        if not login or not address or "@" not in address:
            return False
        resolution = await resolve_recipient(self.store, address)
        return any(target.address == login for target in resolution.local)

    async def on_mail(self, client: ClientInfo, sender: str) -> Verdict:
        """The reverse-path must be owned by the login."""
        if not self._applies(client) or await self.owns(client.auth_user, sender):
            return ACCEPT
        log.info("user=%s refused sender=<%s>: not owned", client.auth_user, sender)
        return refuse(replies.sender_not_owned(sender, client.auth_user))

    async def on_message(self, message: ReceivedMessage) -> Verdict:
        """Every From: and Sender: address, and every Reply-To: address in a local
        domain, must be owned by the logged-in user."""
        login = message.client.auth_user
        if not self._applies(message.client):
            return ACCEPT
        header = message.header
        fields = {"From": header.from_fields, "Sender": header.sender_fields,
                  "Reply-To": header.reply_to_fields}
        authors: dict[str, list[Author]] = {}
        for name, parsed in fields.items():
            found = authors_of(parsed)
            if found is None:
                log.info("queue_id=%s user=%s refused: %s header field cannot be parsed",
                         message.queue_id, login, name)
                return refuse(replies.header_unparsable(name))
            authors[name] = list(dict.fromkeys(found))
        for name in ("From", "Sender"):
            for author in authors[name]:
                if not await self.owns(login, author.address):
                    return _refuse(message, login, name, author)
        for author in authors["Reply-To"]:
            if not await self._may_take_replies(login, author):
                return _refuse(message, login, "Reply-To", author)
        return ACCEPT

    async def _may_take_replies(self, login: str, author: Author) -> bool:
        """A Reply-To address: owned, or in a DNS domain that is not one of ours."""
        if not author.domain:
            return False
        resolution = await resolve_recipient(self.store, author.address)
        return resolution.is_remote or any(
            target.address == login for target in resolution.local)


def _refuse(message: ReceivedMessage, login: str, name: str, author: Author) -> Verdict:
    shown = author.written or author.address
    log.info("queue_id=%s user=%s refused %s <%s>: not owned", message.queue_id, login,
             name, shown)
    if name == "From":
        return refuse(replies.from_not_owned(shown, login))
    return refuse(replies.header_address_not_owned(name, shown, login))
