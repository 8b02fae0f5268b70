"""The selftest's TLS check: does our SMTP port offer STARTTLS with a certificate a sending
provider accepts?

Owns a minimal SMTP probe (greeting, EHLO, STARTTLS, handshake — RFC 3207 §4) against the
configured listener. It does not send mail, so it does not reuse outbound/client.py, whose
session is built to deliver and silently falls back to plain text when TLS fails (the
very thing this check must see). The handshake is tried first with the system's trust
store and hostname checking (what a strict sender does); when only that fails, once more
without verification, to tell "TLS works but the certificate is self-signed or for
another name" (warn) from "TLS is broken" (fail).

Invariants: every step has a deadline (`timeout`); a reply is read up to a bounded size;
the probe always closes its connection.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

from postroom.selftest.checks import CheckResult, CheckStatus, result

_MAX_REPLY_LINES = 100
_MAX_LINE = 4096
_CERT_FIX = ("use a certificate from a public CA for {host}: SSL_TYPE=letsencrypt, or "
             "SSL_TYPE=manual with SSL_CERT_PATH/SSL_KEY_PATH")


@dataclass(frozen=True, slots=True)
class TlsTarget:
    host: str  # where to connect
    port: int
    hostname: str  # the name a sender expects on the certificate (its MX host)
    timeout: float = 10.0


class _ProbeError(Exception):
    """The SMTP dialogue went wrong before the handshake: the check fails with this."""


async def check_tls(target: TlsTarget) -> CheckResult:
    where = f"{target.host}:{target.port}"
    try:
        await _handshake(target, _verifying_context())
    except ssl.SSLCertVerificationError as error:
        reason = error.verify_message or str(error)
        return await _unverified(target, where, reason)
    except _ProbeError as error:
        return result("TLS", CheckStatus.FAIL, f"{where}: {error}", _fix_for(str(error),
                                                                             target))
    except ssl.SSLError as error:
        return result("TLS", CheckStatus.FAIL, f"{where}: TLS handshake failed ({error})",
                      _CERT_FIX.format(host=target.hostname))
    except (OSError, TimeoutError) as error:
        return _unreachable(target, where, error)
    return result("TLS", CheckStatus.PASS, f"{where}: STARTTLS offered, certificate valid "
                  f"for {target.hostname}")


async def _unverified(target: TlsTarget, where: str, reason: str) -> CheckResult:
    try:
        await _handshake(target, _accept_any_context())
    except (OSError, TimeoutError, _ProbeError) as error:
        return result("TLS", CheckStatus.FAIL, f"{where}: handshake failed ({error})",
                      _CERT_FIX.format(host=target.hostname))
    return result("TLS", CheckStatus.WARN,
                  f"{where}: STARTTLS works, but the certificate is not trusted for "
                  f"{target.hostname} ({reason})", _CERT_FIX.format(host=target.hostname))


def _unreachable(target: TlsTarget, where: str, error: BaseException) -> CheckResult:
    text = str(error) or type(error).__name__
    return result("TLS", CheckStatus.FAIL, f"cannot talk SMTP to {where}: {text}",
                  "start `postroom serve` and open port 25, or pass --smtp-host/--smtp-port"
                  " where it listens")


def _fix_for(problem: str, target: TlsTarget) -> str:
    if "STARTTLS" in problem:
        return ("check SSL_TYPE and the certificate files (`postroom serve` logs why TLS "
                "is off)")
    return _CERT_FIX.format(host=target.hostname)


def _verifying_context() -> ssl.SSLContext:
    return ssl.create_default_context(ssl.Purpose.SERVER_AUTH)  # trust store + hostname


def _accept_any_context() -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def _handshake(target: TlsTarget, context: ssl.SSLContext) -> None:
    async with asyncio.timeout(target.timeout):
        reader, writer = await asyncio.open_connection(target.host, target.port,
                                                       limit=_MAX_LINE)
    try:
        async with asyncio.timeout(target.timeout):
            await _expect(reader, 220, "greeting")
            writer.write(f"EHLO {target.hostname}\r\n".encode("ascii", "replace"))
            lines = await _expect(reader, 250, "EHLO")
            if not any(line[4:].strip().upper() == "STARTTLS" for line in lines):
                raise _ProbeError("STARTTLS not offered in the EHLO reply")
            writer.write(b"STARTTLS\r\n")
            await _expect(reader, 220, "STARTTLS")
            await writer.start_tls(context, server_hostname=target.hostname)
            writer.write(b"QUIT\r\n")
    finally:
        writer.transport.abort()


async def _expect(reader: asyncio.StreamReader, code: int, step: str) -> list[str]:
    """Read one (multi-line) reply; raise _ProbeError unless it has `code`."""
    lines: list[str] = []
    while len(lines) < _MAX_REPLY_LINES:
        try:
            raw = await reader.readline()
        except ValueError as error:  # a line over the limit
            raise _ProbeError(f"{step}: reply line too long") from error
        if not raw:
            raise _ProbeError(f"connection closed at {step}")
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        lines.append(line)
        if line[3:4] != "-":  # RFC 5321 §4.2.1: the last line has a space after the code
            break
    if not lines[-1][:3].isdigit() or int(lines[-1][:3]) != code:
        raise _ProbeError(f"{step} answered {lines[-1]!r}")
    return lines
