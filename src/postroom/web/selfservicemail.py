"""Vacation reply, forwarding and Junk settings on the self-service pages (issue 21).

Owns /me/vacation and /me/forwarding (both written as the managed Sieve script of
accounts/mailrules.py, which includes a user's own active script rather than replacing
it) and /me/junk (the account's own spam thresholds, the ones `postroom filter set`
sets; delivery/spamfiling.py applies them).

Invariants: input is checked by the rules' owners (mailrules.check_*, the threshold
order here) and refused with the reason on the same page, the user's input kept; a
script that would not fit the Sieve quotas is refused the same way.
"""

from __future__ import annotations

import math

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from postroom.accounts.mailrules import (
    MAX_DAYS,
    MAX_SUBJECT,
    MAX_TEXT,
    MIN_DAYS,
    check_forwarding,
    check_vacation,
)
from postroom.errors import BadSyntax, Refused
from postroom.store.api import SpamThresholds
from postroom.web.context import context
from postroom.web.forms import checked_form
from postroom.web.render import redirect, render
from postroom.web.selfservicekit import SECTIONS, account_of, form_text, mail_rules
from postroom.web.sessions import require_user

MAX_SCORE = 1000.0


def routes() -> list[BaseRoute]:
    return [Route("/me/vacation", vacation_page, methods=["GET"]),
            Route("/me/vacation", save_vacation, methods=["POST"]),
            Route("/me/forwarding", forwarding_page, methods=["GET"]),
            Route("/me/forwarding", save_forwarding, methods=["POST"]),
            Route("/me/junk", junk_page, methods=["GET"]),
            Route("/me/junk", save_junk, methods=["POST"])]


# -- vacation and forwarding (the managed Sieve script) ---------------------------------
async def vacation_page(request: Request, status: int = 200, **values: object) -> Response:
    account = await account_of(request, require_user(request))
    state = await mail_rules(context(request)).state(account.id)
    values.setdefault("vacation", state.rules.vacation)
    return render(request, "me_vacation.html", status, sections=SECTIONS,
                  section="vacation", state=state, max_subject=MAX_SUBJECT,
                  max_text=MAX_TEXT, min_days=MIN_DAYS, max_days=MAX_DAYS, **values)


async def save_vacation(request: Request) -> Response:
    account = await account_of(request, require_user(request))
    form = await checked_form(request)
    days = form_text(form.get("days"), 4)
    try:
        vacation = check_vacation(
            form.get("is_on") == "on", form_text(form.get("start"), 10),
            form_text(form.get("end"), 10), form_text(form.get("subject"), MAX_SUBJECT),
            form_text(form.get("text"), MAX_TEXT), int(days) if days.isdigit() else 0)
        await mail_rules(context(request)).save(account.id, vacation=vacation)
    except (BadSyntax, Refused) as failure:
        return await vacation_page(request, 400, error=str(failure))
    shown = "on" if vacation.is_on else "off"
    return redirect("/me/vacation", f"Your vacation reply is {shown}.")


async def forwarding_page(request: Request, status: int = 200, **values: object) -> Response:
    account = await account_of(request, require_user(request))
    state = await mail_rules(context(request)).state(account.id)
    values.setdefault("forwarding", state.rules.forwarding)
    return render(request, "me_forwarding.html", status, sections=SECTIONS,
                  section="forwarding", state=state, **values)


async def save_forwarding(request: Request) -> Response:
    user = require_user(request)
    account = await account_of(request, user)
    form = await checked_form(request)
    try:
        forwarding = check_forwarding(form_text(form.get("address"), 320),
                                      form.get("keep_copy") == "on", account.address)
        await mail_rules(context(request)).save(account.id, forwarding=forwarding)
    except (BadSyntax, Refused) as failure:
        return await forwarding_page(request, 400, error=str(failure))
    message = (f"Mail is forwarded to {forwarding.address}." if forwarding.address
               else "Mail is no longer forwarded.")
    return redirect("/me/forwarding", message)


# -- Junk settings ---------------------------------------------------------------------
async def junk_page(request: Request, status: int = 200, **values: object) -> Response:
    account = await account_of(request, require_user(request))
    ctx = context(request)
    own = await ctx.runtime.store.get_spam_thresholds(account.id)
    values.setdefault("own", own or SpamThresholds())
    config = ctx.config
    return render(request, "me_junk.html", status, sections=SECTIONS, section="junk",
                  defaults=SpamThresholds(config.sa_tag, config.sa_tag2, config.sa_kill),
                  **values)


async def save_junk(request: Request) -> Response:
    account = await account_of(request, require_user(request))
    form = await checked_form(request)
    try:
        if form.get("reset") == "1":
            thresholds = SpamThresholds()
        else:
            thresholds = _thresholds(*(form_text(form.get(name), 20)
                                       for name in ("tag", "tag2", "kill")))
    except BadSyntax as failure:
        return await junk_page(request, 400, error=str(failure))
    await context(request).runtime.store.set_spam_thresholds(account.id, thresholds)
    return redirect("/me/junk", "Your Junk settings were saved.")


def _thresholds(tag: str, tag2: str, kill: str) -> SpamThresholds:
    values = [_score(name, text) for name, text in
              (("the tag level", tag), ("the Junk level", tag2), ("the refuse level", kill))]
    given = [value for value in values if value is not None]
    if given != sorted(given):
        raise BadSyntax("the levels must grow: tag ≤ Junk ≤ refuse")
    return SpamThresholds(*values)


def _score(name: str, text: str) -> float | None:
    if not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        raise BadSyntax(f"{name} must be a number, like 6.5") from None
    if not math.isfinite(value) or abs(value) > MAX_SCORE:
        raise BadSyntax(f"{name} must lie between -{MAX_SCORE:g} and {MAX_SCORE:g}")
    return value
