"""Every SMTP reply postroom sends, named, with its enhanced status code.

Owns reply texts and their rendering (the inbound checks' refusals are named in
checks/replies.py and rendered here). RFC 2034 §3: once ENHANCEDSTATUSCODES is advertised,
every 2xx/4xx/5xx reply except the greeting and the HELO/EHLO response carries an
RFC 3463 status code, so each reply here has one (or deliberately none: 220 greeting,
250 EHLO/HELO, 334, 354). Texts follow Postfix where clients or humans know them.
"""

from __future__ import annotations

from dataclasses import dataclass

from postroom.security.limits import Refusal


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    status: str  # RFC 3463 enhanced code, "" where RFC 2034 wants none
    lines: tuple[str, ...]

    @property
    def is_positive(self) -> bool:
        return self.code < 400

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def render(self) -> bytes:
        """RFC 5321 §4.2.1: continuation lines use `code-`, the last `code `."""
        out = []
        for index, line in enumerate(self.lines):
            separator = " " if index == len(self.lines) - 1 else "-"
            prefix = f"{self.status} " if self.status else ""
            out.append(f"{self.code}{separator}{prefix}{line}\r\n")
        return "".join(out).encode("utf-8")


def reply(code: int, status: str, *lines: str) -> Reply:
    return Reply(code, status, lines or ("",))


# -- connection ---------------------------------------------------------------------

def greeting(hostname: str) -> Reply:
    return reply(220, "", f"{hostname} ESMTP postroom")


def render_refusal(refusal: Refusal, hostname: str) -> bytes:
    """Instead of the greeting (RFC 5321 §3.8: a server that must not serve a client
    answers 421 and closes); a `RefusalRenderer` (security/limits.py)."""
    # RFC 3463: 4.7.0 security/policy for ours to refuse, 4.3.2 system not accepting.
    status = "4.3.2" if refusal is Refusal.TOO_MANY_CONNECTIONS else "4.7.0"
    return reply(421, status, f"{hostname} {refusal.value}").render()


def ehlo(hostname: str, client_name: str, capabilities: list[str]) -> Reply:
    return Reply(250, "", (f"{hostname} greets {client_name}", *capabilities))


def helo(hostname: str) -> Reply:
    return reply(250, "", hostname)


BYE = reply(221, "2.0.0", "Bye")
OK = reply(250, "2.0.0", "Ok")
RESET_OK = reply(250, "2.0.0", "Ok")
HELP = reply(214, "2.0.0", "See RFC 5321 and https://www.rfc-editor.org/")
VRFY_CANNOT = reply(252, "2.0.0", "Cannot VRFY user, but will accept message and attempt delivery")
EXPN_NOT_IMPLEMENTED = reply(502, "5.5.1", "EXPN not available")
SHUTTING_DOWN = reply(421, "4.3.2", "Service shutting down, closing connection")
TIMEOUT = reply(421, "4.4.2", "Timeout exceeded, closing connection")
LOCAL_ERROR = reply(451, "4.3.0", "Local error in processing, try again later")
# Storage failures (store/errors.py, issue 25): RFC 3463 §3.5 X.3.1 "mail system full".
INSUFFICIENT_STORAGE = reply(452, "4.3.1", "Insufficient system storage")
STORAGE_ERROR = reply(451, "4.3.0", "Local error in processing: mail storage error, "
                      "try again later")
STORAGE_DAMAGED = reply(451, "4.3.0", "Mail storage is damaged: not accepting mail until "
                        "it is repaired, try again later")

# -- syntax and sequence --------------------------------------------------------------
LINE_TOO_LONG = reply(500, "5.5.2", "Line too long")
BARE_LF_COMMAND = reply(500, "5.5.2", "Bare <LF> received; lines must end in <CR><LF>")
UNRECOGNIZED = reply(500, "5.5.2", "Command not recognized")
NEED_HELO = reply(503, "5.5.1", "Send HELO/EHLO first")
NEED_MAIL = reply(503, "5.5.1", "Need MAIL command")
NESTED_MAIL = reply(503, "5.5.1", "Nested MAIL command")
NEED_RCPT = reply(503, "5.5.1", "Need RCPT command")
NO_VALID_RECIPIENTS = reply(554, "5.5.1", "No valid recipients")
TOO_MANY_RECIPIENTS = reply(452, "4.5.3", "Too many recipients")
# Exim's smtp_accept_max_per_connection: 421 and close; the client reconnects for more.
TOO_MANY_MESSAGES = reply(421, "4.7.0", "Too many messages in one connection; reconnect")


def syntax_error(reason: str) -> Reply:
    return reply(501, "5.5.4", f"Syntax error: {reason}")


def parameter_not_recognized(reason: str) -> Reply:
    return reply(555, "5.5.4", reason[:1].upper() + reason[1:])


# -- MAIL / RCPT ----------------------------------------------------------------------
SENDER_OK = reply(250, "2.1.0", "Sender OK")
RECIPIENT_OK = reply(250, "2.1.5", "Recipient OK")
SMTPUTF8_NEEDED = reply(553, "5.6.7", "Non-ASCII address requires SMTPUTF8")
BAD_SENDER = reply(553, "5.1.7", "Sender address rejected: invalid address")


def user_unknown(address: str) -> Reply:
    return reply(550, "5.1.1", f"<{address}>: Recipient address rejected: User unknown")


def relay_denied(address: str) -> Reply:
    return reply(554, "5.7.1", f"<{address}>: Relay access denied")


def relay_unavailable(address: str) -> Reply:
    return reply(550, "5.7.1", f"<{address}>: Relaying not available")


def bad_recipient(address: str) -> Reply:
    return reply(553, "5.1.3", f"<{address}>: Recipient address rejected: invalid address")


def mailbox_full(address: str) -> Reply:
    """RCPT for an account without room (issue 25): temporary, the sender retries
    (RFC 3463 X.2.2; Postfix's and Dovecot's wording)."""
    return reply(452, "4.2.2", f"<{address}>: Recipient address rejected: Mailbox full")


def quota_exceeded(address: str) -> Reply:
    """RCPT whose declared SIZE the account's quota has no room for (issue 17): permanent,
    as Dovecot's quota-status answers docker-mailserver's Postfix (RFC 3463 X.2.2)."""
    return reply(552, "5.2.2", f"<{address}>: Recipient address rejected: Quota exceeded"
                 " (mailbox for user is full)")


def size_too_big(limit: int) -> Reply:
    return reply(552, "5.3.4", f"Message size exceeds fixed limit ({limit} bytes)")


# -- DATA -----------------------------------------------------------------------------
START_DATA = reply(354, "", "End data with <CR><LF>.<CR><LF>")
BARE_NEWLINE_DATA = reply(521, "5.5.2", "Bare <LF> or <CR> received in message data; "
                          "closing connection")
MAIL_LOOP = reply(554, "5.4.6", "Too many Received headers: mail forwarding loop")
MAILBOX_FULL = reply(452, "4.2.2", "Mailbox full")  # after DATA: no recipient had room
# After DATA, when only quotas left no room (issue 17): Dovecot LMTP's permanent answer.
QUOTA_EXCEEDED = reply(552, "5.2.2", "Quota exceeded (mailbox for user is full)")


# -- BDAT (RFC 3030) ------------------------------------------------------------------
# §4: the octets after an unparsable BDAT line cannot be told from commands: close.
BAD_BDAT = reply(501, "5.5.4", "Syntax: BDAT chunk-size [LAST]; closing connection")
DATA_AFTER_BDAT = reply(503, "5.5.1", "DATA not allowed after BDAT")  # §2
BINARYMIME_NEEDS_BDAT = reply(503, "5.5.1", "BODY=BINARYMIME requires BDAT")  # §3


def chunk_received(size: int) -> Reply:
    return reply(250, "2.0.0", f"Ok: {size} octets received")


def queued(queue_id: str) -> Reply:
    return reply(250, "2.0.0", f"Ok: queued as {queue_id}")


# -- STARTTLS / AUTH ------------------------------------------------------------------
READY_TLS = reply(220, "2.0.0", "Ready to start TLS")
TLS_ALREADY = reply(503, "5.5.1", "TLS already active")
TLS_NOT_AVAILABLE = reply(454, "4.7.0", "TLS not available")
MUST_STARTTLS = reply(530, "5.7.0", "Must issue a STARTTLS command first")
AUTH_REQUIRED = reply(530, "5.7.0", "Authentication required")
# RFC 8689 §4.1: REQUIRETLS only over TLS (X.7.10 "encryption needed", RFC 5248 registry).
REQUIRETLS_WITHOUT_TLS = reply(530, "5.7.10", "REQUIRETLS needs a TLS connection")
AUTH_NOT_ENABLED = reply(503, "5.5.1", "Authentication not enabled")
AUTH_ALREADY = reply(503, "5.5.1", "Already authenticated")
AUTH_IN_TRANSACTION = reply(503, "5.5.1", "AUTH not permitted during a mail transaction")
AUTH_MECHANISM_UNKNOWN = reply(504, "5.5.4", "Unrecognized authentication type")
AUTH_OK = reply(235, "2.7.0", "Authentication successful")
AUTH_FAILED = reply(535, "5.7.8", "Authentication credentials invalid")
AUTH_CANCELLED = reply(501, "5.0.0", "Authentication cancelled")
AUTH_BAD_RESPONSE = reply(501, "5.5.2", "Cannot decode response")
AUTH_TEMPORARY = reply(454, "4.7.0", "Temporary authentication failure")


def challenge(text: str) -> Reply:
    return Reply(334, "", (text,))
