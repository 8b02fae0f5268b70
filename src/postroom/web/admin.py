"""The admin console (issue 21): its routes, and the dashboard.

Owns `routes()` — every /admin page, gathered from the admin*.py modules — and the
dashboard: today's traffic (this process's hourly tally in metrics.py: received, sent,
rejected by reason) with its chart, the outbound queue's size, and counts of what the
server holds. The pages by subject: adminaccounts.py (domains, accounts, aliases),
admindns.py (DKIM keys and DNS records), adminqueue.py (the outbound queue),
adminfilters.py (bans, greylist, spam thresholds, TLS certificates); here also the
audit log's page. adminkit.py is what they share, adminchart.py the chart's geometry.

Invariant: every route here is for administrators only (adminkit.admin_page and
admin_action check it first); every change is CSRF-checked and audited.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from postroom.metrics import TRAFFIC, reason_name
from postroom.tls.served import served_certificates
from postroom.web.adminaccounts import routes as account_routes
from postroom.web.adminchart import traffic_chart
from postroom.web.admindns import routes as dns_routes
from postroom.web.adminfilters import routes as filter_routes
from postroom.web.adminkit import admin_page, paginate, query_text
from postroom.web.adminqueue import routes as queue_routes
from postroom.web.context import WebContext
from postroom.web.render import render

EXPIRY_WARNING = dt.timedelta(days=14)
MAX_REASONS = 20  # rejection reasons listed on the dashboard
MAX_AUDIT = 1000  # audit entries the audit page reads


def routes() -> list[BaseRoute]:
    return [admin_page("/admin", dashboard), *account_routes(), *dns_routes(),
            *queue_routes(), *filter_routes(), admin_page("/admin/audit", audit_page)]


async def audit_page(request: Request, ctx: WebContext) -> Response:
    """The newest MAX_AUDIT entries of the audit log, newest first (`postroom audit`
    reads further back)."""
    actor = query_text(request, "actor").lower() or None
    entries = await ctx.runtime.store.audit_entries(actor=actor, limit=MAX_AUDIT)
    return render(request, "admin_audit.html", section="audit", actor=actor or "",
                  page=paginate(request, entries[::-1]), limit=MAX_AUDIT)


async def dashboard(request: Request, ctx: WebContext) -> Response:
    hours = TRAFFIC.hours()
    reasons: Counter[str] = Counter()
    for hour in hours:
        for status, count in hour.rejected.items():
            reasons[f"{reason_name(status)} ({status})"] += count
    queue = await ctx.runtime.store.list_queue()
    now = ctx.clock.now()
    store = ctx.runtime.store
    return render(
        request, "admin_dashboard.html", section="dashboard",
        received=sum(hour.received for hour in hours), sent=sum(hour.sent for hour in hours),
        rejected=sum(hour.rejected_total for hour in hours),
        reasons=reasons.most_common(MAX_REASONS), chart=traffic_chart(hours),
        queue_recipients=len(queue),
        queue_messages=len({entry.message_id for entry in queue}),
        queue_oldest=min((entry.created for entry in queue), default=None),
        accounts=await store.count_accounts(), domains=len(await store.list_domains()),
        bans=len(await store.list_bans(now)), expiring=_expiring(ctx, now))


def _expiring(ctx: WebContext, now: dt.datetime) -> list[str]:
    """Certificates expired, expiring within EXPIRY_WARNING, or unreadable."""
    found = []
    for served in served_certificates(ctx.config):
        if served.facts is None:
            found.append(f"{served.path}: {served.problem}")
        elif served.facts.not_after - now <= EXPIRY_WARNING:
            names = " ".join(served.facts.names) or str(served.path)
            found.append(f"{names}: expires {served.facts.not_after:%Y-%m-%d %H:%M} UTC")
    return found
