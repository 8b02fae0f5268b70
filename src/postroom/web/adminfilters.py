"""Admin pages of the server's defences (issue 21): bans (list, lift), greylisting
(list, forget a client), spam thresholds (global, per account) and TLS certificates.

Owns the pages and actions only; the rules are where the CLI finds them too:
security/bans.py and security/peer.py (ban keys), checks/greylist.py (client networks),
the store's GreylistStore (thresholds, as `filter set`), tls/served.py (`tls status`).

Invariants: thresholds are finite numbers within ±THRESHOLD_LIMIT, ordered tag ≤ tag2 ≤
kill as `filter set` demands; lifting a ban takes effect at the client's next
connection (the guard reads the store).
"""

from __future__ import annotations

import datetime as dt
import math

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from postroom.checks.greylist import client_network
from postroom.security.peer import address_key
from postroom.store.api import SpamThresholds
from postroom.tls.served import renewal_due, served_certificates
from postroom.web.adminkit import (
    ActionRefused,
    AdminForm,
    admin_action,
    admin_page,
    done,
    paginate,
    query_text,
)
from postroom.web.context import WebContext
from postroom.web.render import render

BANS, GREYLIST, FILTERS = "/admin/bans", "/admin/greylist", "/admin/filters"
THRESHOLD_LIMIT = 1000.0


def routes() -> list[BaseRoute]:
    return [
        admin_page(BANS, bans_page), admin_action(BANS + "/delete", lift_ban, BANS),
        admin_page(GREYLIST, greylist_page),
        admin_action(GREYLIST + "/delete", forget_client, GREYLIST),
        admin_page(FILTERS, filters_page),
        admin_action(FILTERS + "/thresholds", set_thresholds, FILTERS),
        admin_page("/admin/tls", tls_page),
    ]


# -- bans ----------------------------------------------------------------------------------
async def bans_page(request: Request, ctx: WebContext) -> Response:
    bans = await ctx.runtime.store.list_bans(ctx.clock.now())
    return render(request, "admin_bans.html", section="bans", page=paginate(request, bans),
                  ban_time=ctx.config.auth_ban_time)


async def lift_ban(request: Request, ctx: WebContext, form: AdminForm) -> Response:
    try:
        key = address_key(form.text("address"))
    except ValueError:
        raise ActionRefused(f"{form.text('address')!r} is not an IP address or network"
                            ) from None
    if not await ctx.runtime.store.delete_ban(key):
        raise ActionRefused(f"no ban for {key}")
    return await done(request, BANS, f"Lifted the ban on {key}.", "ban.delete", key)


# -- greylist ------------------------------------------------------------------------------
async def greylist_page(request: Request, ctx: WebContext) -> Response:
    search = query_text(request).lower()
    entries = [entry for entry in await ctx.runtime.store.list_greylist()
               if not search or search in entry.client or search in entry.sender.lower()
               or search in entry.recipient.lower()]
    return render(request, "admin_greylist.html", section="greylist", q=search,
                  page=paginate(request, entries), is_enabled=ctx.config.enable_postgrey,
                  clients=(await ctx.runtime.store.list_greylist_clients())[:50])


async def forget_client(request: Request, ctx: WebContext, form: AdminForm) -> Response:
    client = form.text("client")
    try:
        key = client_network(client)
    except ValueError:
        key = client  # a network key as listed: 192.0.2 or 2001:db8:0:1
    removed = await ctx.runtime.store.delete_greylist(key)
    if not removed:
        raise ActionRefused(f"nothing greylisted for {key}")
    return await done(request, GREYLIST, f"{key}: {removed} entries removed.",
                      "greylist.delete", key, f"{removed} entries")


# -- spam thresholds -----------------------------------------------------------------------
async def filters_page(request: Request, ctx: WebContext) -> Response:
    config = ctx.config
    own = await ctx.runtime.store.list_spam_thresholds()
    return render(request, "admin_filters.html", section="filters",
                  tag=config.sa_tag, tag2=config.sa_tag2, kill=config.sa_kill,
                  page=paginate(request, own))


async def set_thresholds(request: Request, ctx: WebContext, form: AdminForm) -> Response:
    address = form.text("address").lower()
    store = ctx.runtime.store
    account = await store.get_account(address)
    if account is None:
        raise ActionRefused(f"no account {address}")
    values = [_threshold(form, name) for name in ("tag", "tag2", "kill")]
    if form.is_checked("clear") or values == [None, None, None]:
        await store.set_spam_thresholds(account.id, SpamThresholds())
        return await done(request, FILTERS, f"{address} uses the global thresholds again.",
                          "filter.clear", address)
    given = [value for value in values if value is not None]
    if given != sorted(given):
        raise ActionRefused("Thresholds must be ordered: tag ≤ tag2 ≤ kill.")
    thresholds = SpamThresholds(*values)
    await store.set_spam_thresholds(account.id, thresholds)
    shown = ", ".join(f"{name}={value}" for name, value in zip(
        ("tag", "tag2", "kill"), values, strict=True) if value is not None)
    return await done(request, FILTERS, f"Thresholds of {address}: {shown}.", "filter.set",
                      address, shown)


def _threshold(form: AdminForm, name: str) -> float | None:
    text = form.text(name, required=False)
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ActionRefused(f"{name}: {text!r} is not a number") from None
    if not math.isfinite(value) or abs(value) > THRESHOLD_LIMIT:
        raise ActionRefused(f"{name}: a number between -{THRESHOLD_LIMIT:.0f} and "
                            f"{THRESHOLD_LIMIT:.0f}")
    return value


# -- TLS certificates ----------------------------------------------------------------------
async def tls_page(request: Request, ctx: WebContext) -> Response:
    now = ctx.clock.now()
    rows = []
    for served in served_certificates(ctx.config):
        facts = served.facts
        left = (facts.not_after - now) if facts is not None else None
        rows.append({"role": served.role, "path": str(served.path), "problem": served.problem,
                     "names": " ".join(facts.names) if facts else "",
                     "issuer": facts.issuer if facts else "",
                     "expires": facts.not_after if facts else None,
                     "days_left": left.days if left is not None else None,
                     "state": _expiry_state(left),
                     "renews": renewal_due(ctx.config, served)})
    return render(request, "admin_tls.html", section="tls", rows=rows,
                  ssl_type=ctx.config.ssl_type)


def _expiry_state(left: dt.timedelta | None) -> str:
    if left is None or left <= dt.timedelta(0):
        return "bad"
    return "warn" if left <= dt.timedelta(days=14) else "ok"
