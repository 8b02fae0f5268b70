"""rspamd as an inbound check (ENABLE_RSPAMD=1), and rspamd's Bayes learning.

Owns `RspamdCheck` (after DATA: the message to rspamd's `/checkv2` with the transaction's
facts as request headers, its answer turned into a verdict), `parse_answer` (sans-IO: the
JSON answer as an `RspamdAnswer`) and `RspamdLearner` (`/learnspam`, `/learnham` on the
controller worker, RSPAMD_CONTROLLER_URL with RSPAMD_PASSWORD).

Actions (rspamd's protocol documentation, "Rspamd HTTP protocol"), as docker-mailserver's
rspamd setup applies them: `reject` → 554 5.7.1 (with rspamd's smtp_message when it gives
one); `soft reject` and `greylist` → 451 4.7.1; `add header` and `rewrite subject` →
`X-Spam: Yes` and, with MOVE_SPAM_TO_JUNK=1 unless SPAM_TO_INBOX=1, filed into Junk;
`rewrite subject` also records rspamd's new subject (`X-Rspamd-Subject`: checks never
change the message); `no action` → accept. Every answer adds rspamd's symbols (name and
score) and the fields its milter_headers module asks for (`milter.add_headers`).

Invariants: one HTTP request per message, under FILTER_TIMEOUT; rspamd down, slow or
garbled is `scanning.unscanned` (451, or accepted with a header under FILTER_FAIL_OPEN),
never a silent accept; the values we put in request and response fields never carry a
bare line break.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

from postroom.checks.api import (
    ACCEPT,
    CheckReply,
    ReceivedMessage,
    Symbol,
    Verdict,
    quarantine,
    refuse,
)
from postroom.checks.httpclient import Endpoint, Response, post
from postroom.checks.scanning import ScannerError, body_chunks, body_size, scan_guarded
from postroom.config import Config

log = logging.getLogger("postroom.checks")

JUNK = "Junk"
MAX_SYMBOLS = 200  # of one answer: rspamd's own rules number a few hundred at most
MAX_MILTER_FIELDS = 50
MAX_FIELD_VALUE = 8 * 1024
_FIELD_NAME = re.compile(r"[!-9;-~]{1,76}")  # RFC 5322 §3.6.8 ftext, bounded
_PROTECTED = frozenset({"received", "return-path", "authentication-results"})

REJECTED = "Spam message rejected"
TRY_LATER = "Try again later"


@dataclass(frozen=True, slots=True)
class RspamdAnswer:
    action: str
    score: float
    required: float
    symbols: tuple[Symbol, ...]
    subject: str = ""  # `rewrite subject`: the subject rspamd proposes
    smtp_message: str = ""  # rspamd's words for the SMTP reply
    add_headers: tuple[tuple[str, str], ...] = ()  # milter.add_headers, flattened


def parse_answer(raw: bytes) -> RspamdAnswer:
    """rspamd's `/checkv2` JSON; `ScannerError` for anything else."""
    try:
        data = json.loads(raw)
        action = data["action"]
        score, required = float(data["score"]), float(data.get("required_score", 0.0))
    except (ValueError, KeyError, TypeError) as error:
        raise ScannerError(f"unreadable answer ({error.__class__.__name__})") from error
    if not isinstance(data, dict) or not isinstance(action, str):
        raise ScannerError("unreadable answer")
    messages = data.get("messages")
    smtp_message = messages.get("smtp_message", "") if isinstance(messages, dict) else ""
    subject = data.get("subject", "")
    return RspamdAnswer(action.lower(), score, required, _symbols(data.get("symbols")),
                        _one_line(subject) if isinstance(subject, str) else "",
                        _one_line(smtp_message) if isinstance(smtp_message, str) else "",
                        _milter_fields(data.get("milter")))


def _symbols(raw: Any) -> tuple[Symbol, ...]:
    if not isinstance(raw, dict):
        return ()
    found: list[Symbol] = []
    for name, entry in list(raw.items())[:MAX_SYMBOLS]:
        if not isinstance(entry, dict) or not isinstance(name, str):
            continue
        try:
            score = float(entry.get("score", 0.0))
        except (TypeError, ValueError):
            continue
        options = entry.get("options")
        detail = ",".join(str(item) for item in options) if isinstance(options, list) else ""
        found.append(Symbol(name[:100], score, _one_line(detail)[:200]))
    return tuple(found)


def _milter_fields(raw: Any) -> tuple[tuple[str, str], ...]:
    """milter.add_headers: {name: value | {value, order} | [those]} as (name, value)."""
    add = raw.get("add_headers") if isinstance(raw, dict) else None
    if not isinstance(add, dict):
        return ()
    fields: list[tuple[str, str]] = []
    for name, spec in add.items():
        values = spec if isinstance(spec, list) else [spec]
        for value in values:
            text = value.get("value") if isinstance(value, dict) else value
            if (isinstance(name, str) and isinstance(text, str) and _FIELD_NAME.fullmatch(name)
                    and name.lower() not in _PROTECTED):
                fields.append((name, _folded(text)[:MAX_FIELD_VALUE]))
    return tuple(fields[:MAX_MILTER_FIELDS])


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _folded(text: str) -> str:
    """A field value whose line breaks are all RFC 5322 §2.2.3 folds (CRLF + WSP)."""
    lines = [line.rstrip() for line in re.split(r"\r\n|\r|\n", text)]
    first, rest = lines[0], [line.strip() for line in lines[1:] if line.strip()]
    return "\r\n\t".join([first, *rest])


def request_headers(message: ReceivedMessage, config: Config) -> list[tuple[str, str]]:
    """The transaction's facts as rspamd's request fields ("Rspamd HTTP protocol")."""
    client = message.client
    fields = [("IP", client.ip), ("Helo", client.helo_name), ("From", message.sender),
              ("Queue-Id", message.queue_id), ("MTA-Name", config.hostname)]
    fields += [("Rcpt", recipient.address) for recipient in message.recipients]
    if client.auth_user:
        fields.append(("User", client.auth_user))
    if config.rspamd_password:
        fields.append(("Password", config.rspamd_password))
    return [(name, _one_line(value)) for name, value in fields if value or name == "From"]


def render_verdict(answer: RspamdAnswer, config: Config) -> Verdict:
    """What rspamd's action asks of us (see the module docstring)."""
    action = answer.action
    reason = f"rspamd {action} {answer.score:g}/{answer.required:g}"
    if action == "reject":
        return refuse(CheckReply(554, "5.7.1", answer.smtp_message or REJECTED), reason)
    if action in ("soft reject", "greylist"):
        text = answer.smtp_message or TRY_LATER
        return refuse(CheckReply(451, "4.7.1", text), reason)
    fields = tuple(f"{name}: {value}\r\n".encode() for name, value in answer.add_headers)
    score = sum(symbol.score for symbol in answer.symbols)
    if action in ("add header", "rewrite subject"):
        fields += (b"X-Spam: Yes\r\n",)
        if action == "rewrite subject" and answer.subject:
            fields += (f"X-Rspamd-Subject: {answer.subject}\r\n".encode(),)
        return _spam_verdict(fields, answer.symbols, score, reason, config)
    if action != "no action":
        log.warning("rspamd answered the unknown action %r: taken as no action", action)
    if not fields and not answer.symbols:
        return ACCEPT
    return Verdict(headers=fields, score=score, reason=reason, symbols=answer.symbols)


def _spam_verdict(fields: tuple[bytes, ...], symbols: tuple[Symbol, ...], score: float,
                  reason: str, config: Config) -> Verdict:
    # docker-mailserver files rspamd's spam into Junk with MOVE_SPAM_TO_JUNK=1, unless
    # SPAM_TO_INBOX=1 wants tagged spam delivered to INBOX like any other mail.
    if config.move_spam_to_junk and not config.spam_to_inbox:
        spam = quarantine(JUNK, reason, fields)
        return Verdict(spam.action, None, fields, JUNK, score, reason, symbols)
    return Verdict(headers=fields, score=score, reason=reason, symbols=symbols)


@dataclass(frozen=True, slots=True)
class RspamdCheck:
    config: Config
    endpoint: Endpoint
    name: str = "rspamd"
    timeout: float | None = None  # FILTER_TIMEOUT, applied in `on_message` (scanning.py)
    fail_open: bool = False

    @classmethod
    def from_config(cls, config: Config) -> RspamdCheck:
        return cls(config, Endpoint.parse(config.rspamd_url))

    async def on_message(self, message: ReceivedMessage) -> Verdict:
        return await scan_guarded("rspamd", self._scan(message), message,
                                  seconds=self.config.filter_timeout,
                                  fail_open=self.config.filter_fail_open)

    async def _scan(self, message: ReceivedMessage) -> Verdict:
        response = await post(self.endpoint, "/checkv2", request_headers(message, self.config),
                              body_chunks(message), await body_size(message))
        if response.status != 200:
            raise ScannerError(f"HTTP {response.status} {_error_text(response)}")
        answer = parse_answer(response.body)
        log.info("queue_id=%s rspamd action=%r score=%g/%g", message.queue_id, answer.action,
                 answer.score, answer.required)
        return render_verdict(answer, self.config)


def _error_text(response: Response) -> str:
    try:
        error = json.loads(response.body).get("error", "")
    except (ValueError, AttributeError):
        error = ""
    return _one_line(str(error))[:100]


@dataclass(frozen=True, slots=True)
class RspamdLearner:
    """Teaches rspamd's Bayes classifier what the user judged (RSPAMD_LEARN=1)."""

    endpoint: Endpoint
    password: str
    timeout: float

    @classmethod
    def from_config(cls, config: Config) -> RspamdLearner:
        return cls(Endpoint.parse(config.rspamd_controller_url), config.rspamd_password,
                   config.filter_timeout)

    async def learn(self, message: bytes, *, is_spam: bool) -> bool:
        """True when rspamd learnt it (or had already); failures are logged, not raised:
        a message the user filed stays filed whatever rspamd says."""
        path = "/learnspam" if is_spam else "/learnham"
        headers = [("Password", self.password)] if self.password else []
        try:
            async with asyncio.timeout(self.timeout):
                response = await post(self.endpoint, path, headers, _once(message),
                                      len(message))
        except (OSError, TimeoutError, ScannerError) as error:
            log.warning("rspamd %s failed: %s", path, error or type(error).__name__)
            return False
        # 208: "has been already learned" (rspamd answers so for a repeated message).
        if response.status in (200, 208) or b"already learned" in response.body:
            return True
        log.warning("rspamd %s: HTTP %d %s", path, response.status, _error_text(response))
        return False


async def _once(data: bytes) -> AsyncGenerator[bytes, None]:
    yield data
