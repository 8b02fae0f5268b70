"""VacationResponse/get and VacationResponse/set (RFC 8621 §8), and `register`.

Owns the mapping between the JMAP singleton and the vacation reply the web self-service
page sets: both read and write it through accounts/mailrules.py (`MailRulesService`),
which keeps the settings in the managed Sieve script delivery runs, so the page, JMAP
and ManageSieve always show the same thing; nothing here writes Sieve text.

Decisions:
- Dates: the managed script tests whole days in the server's zone (TZ), from its start
  day through its end day. fromDate becomes the day it falls on; toDate (exclusive, §8)
  the day of the instant just before it. Read back, fromDate is the start day's
  midnight and toDate the midnight after the end day, both in UTC: a client that sets
  day boundaries gets them back unchanged, other instants come back rounded to the day.
- isEnabled is what delivery does: on in the settings *and* the managed script active
  (a user who activated another script by ManageSieve has turned it off).
- htmlBody is not kept: the Sieve vacation reply is plain text. With no textBody, the
  text is taken from htmlBody; /set reports what it stored differently (§5.3 "updated").
  subject null and "" are both "no subject of your own" (Sieve's default "Auto: …").
- The reply interval (`:days`) is the page's setting, kept as it is.
- The state is a digest of the object, so it changes exactly when the object does.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

from postroom.accounts.mailrules import (
    MAX_SUBJECT,
    MAX_TEXT,
    MailRulesService,
    RulesState,
    Vacation,
    check_vacation,
)
from postroom.accounts.sievescripts import SieveScripts
from postroom.clock import display_zone
from postroom.errors import BadSyntax, Refused
from postroom.jmap.context import VACATION_RESPONSE, CallContext
from postroom.jmap.core import Call, MethodRegistry, Response
from postroom.jmap.errors import (
    MethodError,
    MethodErrorType,
    SetError,
    SetErrorType,
    SetFailure,
    render_set_errors,
)
from postroom.jmap.standard import apply_patch, parse_get_args, parse_set_args
from postroom.jmap.types import parse_utc_date, render_utc_date
from postroom.mail.preview import html_text
from postroom.store.api import Account

SINGLETON = "singleton"  # §8: the one VacationResponse's id
PROPERTIES = ("id", "isEnabled", "fromDate", "toDate", "subject", "textBody", "htmlBody")
MAX_HTML = 64 * 1024  # characters of an htmlBody read for its text
_ONE_TICK = dt.timedelta(microseconds=1)


def _service(call: Call[CallContext]) -> MailRulesService:
    store = call.context.jmap.runtime.store
    return MailRulesService(store, SieveScripts(call.context.jmap.config, store))


def _zone(call: Call[CallContext]) -> dt.tzinfo:
    return display_zone(call.context.jmap.config.timezone)  # what `currentdate` compares in


def render_vacation(state: RulesState, zone: dt.tzinfo) -> dict[str, Any]:
    vacation = state.rules.vacation

    def midnight(day: str, later: int = 0) -> str | None:
        if not day:
            return None
        date = dt.date.fromisoformat(day) + dt.timedelta(days=later)
        return render_utc_date(dt.datetime.combine(date, dt.time(), zone))

    return {"id": SINGLETON, "isEnabled": vacation.is_on and state.is_in_force,
            "fromDate": midnight(vacation.start), "toDate": midnight(vacation.end, 1),
            "subject": vacation.subject or None, "textBody": vacation.text or None,
            "htmlBody": None}


def render_state(record: dict[str, Any]) -> str:
    text = json.dumps(record, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


async def _current(call: Call[CallContext],
                   account: Account) -> tuple[RulesState, dict[str, Any]]:  # fmt: skip
    state = await _service(call).state(account.id)
    return state, render_vacation(state, _zone(call))


# -- VacationResponse/get ---------------------------------------------------------------------


async def handle_vacation_get(call: Call[CallContext]) -> list[Response]:
    args = parse_get_args(call.arguments, call.limits, known_properties=PROPERTIES)
    account = call.context.require_account(args.account_id)
    _, record = await _current(call, account)
    wanted = [SINGLETON] if args.ids is None else list(dict.fromkeys(args.ids))
    keep = None if args.properties is None else {*args.properties, "id"}
    found = [record if keep is None else {k: v for k, v in record.items() if k in keep}
             for one in wanted if one == SINGLETON]
    return [("VacationResponse/get", {
        "accountId": call.context.account_id, "state": render_state(record), "list": found,
        "notFound": [one for one in wanted if one != SINGLETON]})]


# -- VacationResponse/set ---------------------------------------------------------------------


def _invalid(names: list[str], description: str) -> SetFailure:
    return SetFailure(SetError.invalid_properties(names, description))


def _optional_text(record: dict[str, Any], name: str) -> str | None:
    value = record.get(name)
    if value is not None and not isinstance(value, str):
        raise _invalid([name], f"{name} must be a String or null")
    return value


def _day(record: dict[str, Any], name: str, zone: dt.tzinfo, *, is_end: bool) -> str:
    """The day (in the server's zone) a fromDate falls on, or the last day a toDate
    leaves in the vacation; "" for null."""
    value = record.get(name)
    if value is None:
        return ""
    try:
        when = parse_utc_date(value) if isinstance(value, str) else None
    except ValueError:
        when = None
    if when is None:
        raise _invalid([name], f"{name} must be a UTCDate or null")
    if is_end:
        when -= _ONE_TICK  # toDate is the first instant no longer in the vacation
    return when.astimezone(zone).date().isoformat()


def parse_vacation(record: dict[str, Any], zone: dt.tzinfo, days: int) -> Vacation:
    """The full VacationResponse a patch made, as the page's settings (checked by the
    page's own rules); SetFailure(invalidProperties) naming what is wrong."""
    unknown = sorted(set(record) - set(PROPERTIES))
    if unknown or record.get("id") != SINGLETON:
        raise _invalid(unknown or ["id"], "unknown, or the id changed")
    is_enabled = record.get("isEnabled")
    if not isinstance(is_enabled, bool):
        raise _invalid(["isEnabled"], "isEnabled must be a Boolean")
    subject = _optional_text(record, "subject") or ""
    text = _optional_text(record, "textBody") or ""
    html = _optional_text(record, "htmlBody")
    if not text and html:
        if len(html) > MAX_HTML:
            raise _invalid(["htmlBody"], f"htmlBody is longer than {MAX_HTML} characters")
        text = " ".join(html_text(html).split())
    start = _day(record, "fromDate", zone, is_end=False)
    end = _day(record, "toDate", zone, is_end=True)
    if start and end and end < start:
        raise _invalid(["fromDate", "toDate"], "toDate is not after fromDate")
    if len(subject) > MAX_SUBJECT:
        raise _invalid(["subject"], f"subject is longer than {MAX_SUBJECT} characters")
    if len(text) > MAX_TEXT:
        raise _invalid(["textBody"], f"textBody is longer than {MAX_TEXT} characters")
    if is_enabled and not text.strip():
        raise _invalid(["textBody"], "an enabled vacation response needs a text")
    try:
        return check_vacation(is_enabled, start, end, subject, text, days)
    except BadSyntax as error:  # what the page refuses (a control character, …)
        raise _invalid(["subject", "textBody"], str(error)) from None


async def _update(call: Call[CallContext], account: Account, current: dict[str, Any],
                  days: int, patch: dict[str, Any]) -> dict[str, Any] | None:  # fmt: skip
    """Save the patched singleton; the properties stored otherwise than sent (§5.3)."""
    wanted = apply_patch(current, patch)
    vacation = parse_vacation(wanted, _zone(call), days)
    try:
        saved = await _service(call).save(account.id, vacation=vacation)
    except Refused as error:  # the account's Sieve quotas
        raise SetFailure(SetError(SetErrorType.OVER_QUOTA, str(error))) from None
    stored = render_vacation(saved, _zone(call))
    differs = {name: value for name, value in stored.items() if wanted.get(name) != value}
    return differs or None


async def handle_vacation_set(call: Call[CallContext]) -> list[Response]:
    args = parse_set_args(call.arguments, call.limits)
    account = call.context.require_account(args.account_id)
    state, current = await _current(call, account)
    old_state = render_state(current)
    if args.if_in_state is not None and args.if_in_state != old_state:
        raise MethodError(MethodErrorType.STATE_MISMATCH, "the state is " + old_state)
    singleton = SetError(SetErrorType.SINGLETON, "there is one VacationResponse only")
    not_created = dict.fromkeys(args.create, singleton)  # §8: no create, no destroy
    not_destroyed = dict.fromkeys(args.destroy, singleton)
    updated: dict[str, Any] = {}
    not_updated: dict[str, SetError] = {}
    for key, patch in args.update.items():
        if key != SINGLETON:
            not_updated[key] = SetError(SetErrorType.NOT_FOUND)
            continue
        try:
            updated[key] = await _update(call, account, current, state.rules.vacation.days,
                                         patch)
        except SetFailure as failure:
            not_updated[key] = failure.error
        state, current = await _current(call, account)
    return [("VacationResponse/set", {
        "accountId": call.context.account_id, "oldState": old_state,
        "newState": render_state(current), "created": None, "updated": updated or None,
        "destroyed": None, "notCreated": render_set_errors(not_created),
        "notUpdated": render_set_errors(not_updated),
        "notDestroyed": render_set_errors(not_destroyed)})]


def register(registry: MethodRegistry[CallContext]) -> None:
    registry.register("VacationResponse/get", VACATION_RESPONSE, handle_vacation_get)
    registry.register("VacationResponse/set", VACATION_RESPONSE, handle_vacation_set)

