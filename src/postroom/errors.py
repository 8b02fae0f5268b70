"""One error vocabulary for every protocol (ARCHITECTURE.md rule 4).

Protocol drivers map these to the wire in one place each:
BadSyntax → IMAP BAD / SMTP 500-501 5.5.x / POP3 -ERR;
Refused → IMAP NO [code] / SMTP 5xx / POP3 -ERR;
TryLater → IMAP NO [UNAVAILABLE] / SMTP 4xx / POP3 -ERR.
Anything else is a server bug: logged with its traceback, never shown to a client.
"""

from __future__ import annotations


class PostroomError(Exception):
    """Base of every error postroom raises on purpose."""


class BadSyntax(PostroomError):
    """The peer sent something that does not parse."""


class Refused(PostroomError):
    """A well-formed request that policy or state refuses permanently.

    `code` is a protocol-neutral hint (an IMAP response code such as "NONEXISTENT",
    or an SMTP enhanced status such as "5.1.1"); drivers pick what fits their wire.
    """

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class TryLater(PostroomError):
    """A temporary failure: the same request may succeed later."""


class ConfigError(PostroomError):
    """A configuration value is wrong; the message names the key."""


class StoreError(PostroomError):
    """Base of storage errors (see store.errors)."""
