"""LOGIN and AUTHENTICATE (RFC 9051 §6.2.2-§6.2.3, RFC 4959 SASL-IR, RFC 4616 PLAIN),
UNAUTHENTICATE (RFC 8437), and the specs of the not-authenticated commands (STARTTLS's
too: the session driver runs it, since it upgrades the socket).

Owns turning credentials into an authenticated session and back: the account service
verifies the password (off the event loop, behind the ban guard, so a later LOGIN after
UNAUTHENTICATE is judged like the first), this module moves the connection to
AUTHENTICATED and subscribes it to the account's change feed; UNAUTHENTICATE drops the
account, the selected mailbox, NOTIFY, ENABLEd extensions and the feed subscription.
TLS and COMPRESS stay: they belong to the connection, not to the login (RFC 8437 §3).

Invariants: neither command works before TLS (LOGINDISABLED, RFC 9051 §6.2.3 / §11.1);
a failure never says whether the user or the password was wrong.
"""

from __future__ import annotations

import base64
import logging

from postroom.errors import BadSyntax, Refused
from postroom.imap.commands.context import Context, Done
from postroom.imap.commands.spec import AUTHENTICATED, NOT_AUTHENTICATED, CommandSpec
from postroom.imap.wire.commands.auth import Authenticate, Login, StartTls, Unauthenticate
from postroom.imap.wire.connection import ConnectionState
from postroom.imap.wire.responses import Atom, render_continuation
from postroom.sasl import Challenge, Credentials, SaslAborted, SaslExchange

log = logging.getLogger("postroom.imap")


def _require_tls(ctx: Context) -> None:
    if not ctx.is_tls:
        raise Refused("use STARTTLS first", code="PRIVACYREQUIRED")


async def _log_in(ctx: Context, credentials: Credentials) -> Done:
    if credentials.authzid and credentials.authzid != credentials.username:
        raise Refused("authorization identity not permitted", code="AUTHORIZATIONFAILED")
    account = await ctx.runtime.accounts.authenticate(credentials.username, credentials.password)
    if account is None:
        log.info("imap: failed login for %r", credentials.username)
        raise Refused("invalid credentials", code="AUTHENTICATIONFAILED")
    ctx.account = account
    ctx.state = ConnectionState.AUTHENTICATED
    ctx.subscription = ctx.runtime.feed.subscribe(account.id)
    # RFC 9051 §6.2.2: the OK may carry the new capability list.
    return Done("logged in", "CAPABILITY", tuple(_atoms(ctx.capabilities())))


def _atoms(capabilities: list[str]) -> list[Atom]:
    return [Atom(cap) for cap in capabilities]


async def handle_login(ctx: Context, command: Login) -> Done:
    _require_tls(ctx)
    return await _log_in(ctx, Credentials(command.username, command.password))


async def handle_authenticate(ctx: Context, command: Authenticate) -> Done:
    _require_tls(ctx)
    try:
        exchange = SaslExchange(command.mechanism)
    except BadSyntax as error:
        raise Refused(str(error), code="CANNOT") from error
    initial = command.initial_response
    try:
        step = exchange.start(None if initial is None else _b64(initial))
        while isinstance(step, Challenge):
            await ctx.write(render_continuation(step.text))
            line = await ctx.io.read_line()
            step = exchange.step(line.decode("ascii", "replace"))
    except SaslAborted:
        return Done("authentication cancelled", status="BAD")
    return await _log_in(ctx, step)


async def handle_unauthenticate(ctx: Context, command: Unauthenticate) -> Done:
    """RFC 8437 §3: back to the not-authenticated state, as if freshly connected."""
    if ctx.subscription is not None:
        ctx.subscription.close()
        ctx.subscription = None
    ctx.selected = None
    ctx.is_selected_stale = False
    ctx.notify = None
    ctx.result_contexts = None
    ctx.enabled.clear()
    ctx.conn.is_utf8 = False  # ENABLE UTF8=ACCEPT / IMAP4rev2 ended with the login
    ctx.account = None
    ctx.state = ConnectionState.NOT_AUTHENTICATED
    # RFC 8437 §3: the capabilities change; say which hold now.
    return Done("not authenticated any more", "CAPABILITY", tuple(_atoms(ctx.capabilities())))


def _b64(data: bytes) -> str:
    # SaslExchange takes the wire form; the parser already decoded SASL-IR.
    return base64.b64encode(data).decode("ascii") if data else "="


SPECS = (
    # RFC 9051 §6.2.1: the session runs STARTTLS, which upgrades its socket.
    CommandSpec(StartTls, ("STARTTLS",), None, NOT_AUTHENTICATED, needs_view_tables=False),
    CommandSpec(Authenticate, ("AUTHENTICATE",), handle_authenticate, NOT_AUTHENTICATED,
                needs_view_tables=False, capabilities=("SASL-IR",)),
    CommandSpec(Login, ("LOGIN",), handle_login, NOT_AUTHENTICATED, needs_view_tables=False),
    CommandSpec(Unauthenticate, ("UNAUTHENTICATE",), handle_unauthenticate, AUTHENTICATED,
                needs_view_tables=False, capabilities=("UNAUTHENTICATE",)),
)  # fmt: skip
