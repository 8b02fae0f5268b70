"""Vacation reply and forwarding as the web self-service sets them (issue 21): one Sieve
script that postroom writes, named MANAGED_NAME.

Owns the settings' rules (dates, lengths, one forwarding address), the script text made
from them, reading them back, and which script is active.

Decisions (docs/decisions/0055-self-service.md):
- The settings are kept in the script itself (a JSON comment on its first line), so
  there is no second copy to disagree with what delivery runs, and ManageSieve users see
  exactly what the web page did.
- A user's own script is never edited or clobbered. When one is active as the settings
  are saved, the managed script becomes the active one and *includes* it last
  (`include :personal :optional`, RFC 6609 §3.2): vacation and forwarding first, then
  everything the user's script does (its `stop` ends only what follows). Turning every
  setting off makes the user's script active again and deletes the managed one. A user
  who later activates another script through ManageSieve has chosen it: the managed
  script is then not in force, and the page says so.
- Vacation: RFC 5230 `vacation` (once per sender per `days`, RFC 3834 suppression by
  delivery/sieving.py), between optional dates tested with `currentdate` (RFC 5260 §5)
  in the server's zone. Forwarding: `redirect` (RFC 5228 §4.2), with `:copy` (RFC 3894)
  to keep a copy; delivery sends it with an SRS sender.
- Every text that enters the script is a quoted string with `\\` and `"` escaped (RFC
  5228 §2.4.2), and neither `variables` nor `encoded-character` is required, so nothing
  a user types is interpreted.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field

from postroom.accounts.sievescripts import SieveScripts
from postroom.errors import BadSyntax
from postroom.mail.address import parse_address
from postroom.store.api import Store

MANAGED_NAME = "postroom-selfservice"
_MARKER = "# postroom-settings: "
MAX_SUBJECT = 200
MAX_TEXT = 4000
MIN_DAYS, MAX_DAYS, DEFAULT_DAYS = 1, 30, 7


@dataclass(frozen=True, slots=True)
class Vacation:
    is_on: bool = False
    start: str = ""  # YYYY-MM-DD or ""
    end: str = ""
    subject: str = ""
    text: str = ""
    days: int = DEFAULT_DAYS


@dataclass(frozen=True, slots=True)
class Forwarding:
    address: str = ""  # "" = off
    keep_copy: bool = True


@dataclass(frozen=True, slots=True)
class MailRules:
    vacation: Vacation = field(default_factory=Vacation)
    forwarding: Forwarding = field(default_factory=Forwarding)
    wraps: str = ""  # the user's own script, included after ours

    @property
    def is_empty(self) -> bool:
        return not self.vacation.is_on and not self.forwarding.address


@dataclass(frozen=True, slots=True)
class RulesState:
    rules: MailRules
    is_in_force: bool  # the managed script is the active one
    other_active: str  # the name of another active script, "" when none


def check_vacation(is_on: bool, start: str, end: str, subject: str, text: str,
                   days: int) -> Vacation:
    """The settings, checked; BadSyntax naming the field otherwise."""
    for name, value in (("start", start), ("end", end)):
        if value:
            try:
                dt.date.fromisoformat(value)
            except ValueError:
                raise BadSyntax(f"the {name} date must look like 2026-12-24") from None
    if start and end and end < start:
        raise BadSyntax("the end date is before the start date")
    if len(subject) > MAX_SUBJECT or any(not ch.isprintable() for ch in subject):
        raise BadSyntax(f"the subject: one line of at most {MAX_SUBJECT} characters")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if len(text) > MAX_TEXT or any(not ch.isprintable() and ch not in "\n\t" for ch in text):
        raise BadSyntax(f"the message: at most {MAX_TEXT} characters of text")
    if is_on and not text.strip():
        raise BadSyntax("write the message the reply should carry")
    if not MIN_DAYS <= days <= MAX_DAYS:
        raise BadSyntax(f"reply to each sender every {MIN_DAYS} to {MAX_DAYS} days")
    return Vacation(is_on, start, end, subject.strip(), text, days)


def check_forwarding(address: str, keep_copy: bool, own: str) -> Forwarding:
    if not address.strip():
        return Forwarding("", keep_copy)
    canonical = str(parse_address(address))
    if canonical == own:
        raise BadSyntax("mail cannot be forwarded to the same address")
    return Forwarding(canonical, keep_copy)


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_script(rules: MailRules) -> str:
    """The managed script's text (its first line holds the settings)."""
    settings = json.dumps(asdict(rules), ensure_ascii=True, separators=(",", ":"))
    lines = [_MARKER + settings,
             "# Written by postroom's web self-service: changes made here are replaced."]
    body: list[str] = []
    needs = ["vacation"] if rules.vacation.is_on else []
    if rules.vacation.is_on:
        body += _vacation_lines(rules.vacation, needs)
    if rules.forwarding.address:
        copy = ":copy " if rules.forwarding.keep_copy else ""
        if copy:
            needs.append("copy")
        body.append(f"redirect {copy}{_quoted(rules.forwarding.address)};")
    if rules.wraps:
        needs.append("include")
        body.append(f"include :personal :optional {_quoted(rules.wraps)};")
    if needs:
        lines.append("require [" + ", ".join(_quoted(need) for need in needs) + "];")
    return "\n".join(lines + body) + "\n"


def _vacation_lines(vacation: Vacation, needs: list[str]) -> list[str]:
    subject = f":subject {_quoted(vacation.subject)} " if vacation.subject else ""
    action = f"vacation :days {vacation.days} {subject}{_quoted(vacation.text)};"
    tests = [f'currentdate :value "{op}" "date" {_quoted(day)}'
             for op, day in (("ge", vacation.start), ("le", vacation.end)) if day]
    if not tests:
        return [action]
    needs += ["date", "relational"]
    return [f"if allof ({', '.join(tests)}) {{", f"    {action}", "}"]


def parse_settings(text: str) -> MailRules:
    """The settings of a managed script; the defaults when its first line is not ours."""
    first = text.split("\n", 1)[0]
    if not first.startswith(_MARKER):
        return MailRules()
    try:
        raw = json.loads(first[len(_MARKER):])
        return MailRules(Vacation(**raw["vacation"]), Forwarding(**raw["forwarding"]),
                         str(raw.get("wraps", "")))
    except (ValueError, TypeError, KeyError):
        return MailRules()


class MailRulesService:
    """Reads and saves one account's managed script through SieveScripts (its quotas,
    its compile check, the delivery cache it keeps fresh)."""

    def __init__(self, store: Store, scripts: SieveScripts) -> None:
        self._store = store
        self._scripts = scripts

    async def state(self, account_id: int) -> RulesState:
        text = await self._store.get_sieve_script(account_id, MANAGED_NAME)
        active = await self._store.active_sieve_script(account_id)
        active_name = active[0] if active is not None else ""
        rules = parse_settings(text) if text is not None else MailRules()
        return RulesState(rules, active_name == MANAGED_NAME,
                          "" if active_name == MANAGED_NAME else active_name)

    async def save(self, account_id: int, *, vacation: Vacation | None = None,
                   forwarding: Forwarding | None = None) -> RulesState:
        """Change the given settings, keep the others; the managed script is written
        and made active, or — every setting off — removed, the wrapped script restored."""
        current = await self.state(account_id)
        wraps = current.other_active or (current.rules.wraps if current.is_in_force else "")
        rules = MailRules(vacation or current.rules.vacation,
                          forwarding or current.rules.forwarding, wraps)
        if rules.is_empty:
            await self._remove(account_id, current, wraps)
        else:
            await self._scripts.put(account_id, MANAGED_NAME, render_script(rules))
            await self._scripts.activate(account_id, MANAGED_NAME)
        return await self.state(account_id)

    async def _remove(self, account_id: int, current: RulesState, wraps: str) -> None:
        if current.is_in_force:
            await self._scripts.activate(account_id, wraps if await self._exists(
                account_id, wraps) else "")
        if await self._exists(account_id, MANAGED_NAME):
            await self._scripts.delete(account_id, MANAGED_NAME)

    async def _exists(self, account_id: int, name: str) -> bool:
        return bool(name) and await self._store.get_sieve_script(account_id, name) is not None
