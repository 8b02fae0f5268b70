"""Fetching our own MTA-STS policy as a sender would (RFC 8461 §3.3), for `dns check`.

Owns one HTTPS GET of `https://HOST/.well-known/mta-sts.txt` against a given address and
port: the certificate verified for HOST with the system's trust store (SSL_CERT_FILE
applies, as for any OpenSSL client), no redirects followed (§3.3 forbids them), the
answer 200 with `text/plain` or an error saying what was wrong.

Invariants: bounded in time (`TIMEOUT` per step) and size (`MAX_POLICY`, the 64 KiB a
sender reads at most); every failure is a `PolicyFetchError` with a one-line reason.
"""

from __future__ import annotations

import asyncio
import http.client
import socket
import ssl

from postroom.tls.stspolicy import WELL_KNOWN_PATH

TIMEOUT = 10.0
MAX_POLICY = 64 * 1024  # RFC 8461 §3.3: senders may limit the policy to 64 KiB


class PolicyFetchError(Exception):
    """The policy could not be fetched; the message says why."""


async def fetch_policy(address: str, port: int, host: str) -> str:
    """The policy text served at `address`:`port` for `host`."""
    return await asyncio.to_thread(_fetch, address, port, host)


def _fetch(address: str, port: int, host: str) -> str:
    context = ssl.create_default_context()
    try:
        raw = socket.create_connection((address, port), timeout=TIMEOUT)
    except OSError as error:
        raise PolicyFetchError(f"cannot connect: {error}") from None
    try:
        with raw, context.wrap_socket(raw, server_hostname=host) as tls:
            connection = http.client.HTTPSConnection(host, port, timeout=TIMEOUT)
            connection.sock = tls
            connection.request("GET", WELL_KNOWN_PATH)
            response = connection.getresponse()
            body = response.read(MAX_POLICY + 1)
            kind = response.getheader("Content-Type", "")
    except ssl.SSLCertVerificationError as error:
        raise PolicyFetchError(f"certificate not valid for {host}: "
                               f"{error.verify_message}") from None
    except (OSError, http.client.HTTPException) as error:
        raise PolicyFetchError(f"{type(error).__name__}: {error}") from None
    if response.status != 200:
        raise PolicyFetchError(f"HTTP {response.status} {response.reason}")
    if kind.split(";", 1)[0].strip().lower() != "text/plain":
        raise PolicyFetchError(f"Content-Type is {kind or 'missing'}, not text/plain")
    if len(body) > MAX_POLICY:
        raise PolicyFetchError("the policy is over 64 KiB")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise PolicyFetchError("the policy is not UTF-8 text") from None
