"""Every JMAP method the server answers (issue 23), in one registry.

Owns `build_registry`: Core/echo (RFC 8620), Mailbox/*, Email/*, Thread/*, SearchSnippet
and Email/import (RFC 8621 §2-§5), Identity/* and EmailSubmission/* (§6-§7),
VacationResponse/* (§8). app.py builds it once and hands it to `JmapContext`; a
capability is advertised exactly when one of its methods is registered here.

Where to add a method: a handler `async def handle_x(call: Call[CallContext])` in the
module of its data type, registered by that module's `register`, and the module's line
below (docs/ARCHITECTURE.md, "Where to add things").
"""

from __future__ import annotations

from dataclasses import replace

from postroom.config import Config
from postroom.jmap import emails, identities, mailboxset, snippets, submission, vacation
from postroom.jmap.context import MAIL, CallContext, Capability, default_capabilities
from postroom.jmap.core import MethodRegistry, register_core
from postroom.jmap.emailquery import SORT_OPTIONS
from postroom.jmap.submission import MessageAcceptor


def build_registry(acceptor: MessageAcceptor) -> MethodRegistry[CallContext]:
    """The registry; `acceptor` takes an EmailSubmission's message the way SMTP
    submission takes one after DATA (app.py passes smtp/receive.py's Receiver: jmap/
    may not import smtp/)."""
    registry: MethodRegistry[CallContext] = MethodRegistry()
    register_core(registry)
    mailboxset.register(registry)
    emails.register(registry)  # Email/* and Thread/* (with emailquery, emailset)
    snippets.register(registry)
    identities.register(registry)
    submission.register(registry, acceptor)
    vacation.register(registry)
    return registry


def capabilities(config: Config) -> dict[str, Capability]:
    """The capability objects as these methods fill them (RFC 8621 §1.3.1: the sorts
    Email/query supports)."""
    mail = default_capabilities(config)[MAIL]
    return {MAIL: replace(mail, account={**mail.account,
                                         "emailQuerySortOptions": list(SORT_OPTIONS)})}
