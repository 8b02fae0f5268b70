"""The audit log of admin actions (issue 21): who did what to what, when, from where.

Owns `audit(request, action, target, detail)`, which every admin page calls after an
action succeeds, and `audit_cli`, which the `postroom admin …` verbs call. Entries live
in the store (WebStore role) and are read by `postroom audit [--since] [--actor]`.

Action names are dotted, object first: "account.create", "account.password",
"alias.delete", "queue.delete", "admin.grant", … Details never hold a password or a
secret.
"""

from __future__ import annotations

import datetime as dt
import logging

from starlette.requests import Request

from postroom.store.api import Store
from postroom.store.web_api import AuditEntry
from postroom.web.clients import client_key
from postroom.web.context import context
from postroom.web.sessions import current_user

log = logging.getLogger("postroom.web.audit")
MAX_DETAIL = 1000  # characters kept of a detail


async def audit(request: Request, action: str, target: str, detail: str = "") -> None:
    """Record an admin action done by this request's user."""
    ctx = context(request)
    user = current_user(request)
    actor = user.address if user is not None else "anonymous"
    entry = AuditEntry(ctx.clock.now(), actor, action, target, detail[:MAX_DETAIL],
                       client_key(request) or "")
    log.info("audit actor=%s action=%s target=%s", actor, action, target)
    await ctx.runtime.store.add_audit_entry(entry)


async def audit_cli(store: Store, action: str, target: str, detail: str = "") -> None:
    """Record an admin action done with the CLI (`actor` "cli")."""
    await store.add_audit_entry(AuditEntry(dt.datetime.now(dt.UTC), "cli", action, target,
                                           detail[:MAX_DETAIL]))
