"""The message body in the SMTP session: DATA, and BDAT (RFC 3030 CHUNKING, with
BINARYMIME); and the transaction a body is received into.

Owns what DATA and BDAT mean once smtp/wire.py has framed them: when a body may start,
where its octets go (the transaction's spool), the replies (`354`; `250` per chunk; the
end-of-data reply), and for BDAT whether a chunk is taken or read and dropped, with the
limits a DATA body has applied across chunks:
- POSTFIX_MESSAGE_SIZE_LIMIT counts every chunk of the message; the chunk that would pass
  it is refused before a byte of it is kept (its size is announced up front);
- SMTP_DATA_TIMEOUT runs from the first BDAT to the end of the `LAST` chunk (the command
  lines in between still have SMTPD_TIMEOUT each, within that);
- bare CR or LF are not looked at: chunk octets are the message as it is (§3 BINARYMIME).
DATA's end marker and the `LAST` chunk end in the same path (the session's
`complete_message`: checks, storage, replies).

Invariants (RFC 3030 §2–4): a chunk is always consumed, accepted or not; a refused BDAT
fails and resets its transaction, so later pipelined chunks of it are refused as well
(no MAIL) and dropped; DATA in a transaction that used BDAT is `503 5.5.1`, as is DATA for
BODY=BINARYMIME (§3); a malformed BDAT line closes the connection, since where its chunk
ends is unknown.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

from postroom.delivery.transit import Envelope
from postroom.smtp import replies
from postroom.smtp.receive import Receiver, Spool
from postroom.smtp.replies import Reply
from postroom.smtp.wire import (
    BadBdat,
    BareNewline,
    Bdat,
    ChunkEnd,
    Data,
    DataChunk,
    DataEnd,
    SizeExceeded,
    SmtpConnection,
)


@dataclass(slots=True)
class Transaction(Envelope):
    """A mail transaction and its body as it arrives (DATA or BDAT)."""

    spool: Spool | None = None
    chunked: int | None = None  # octets received by BDAT so far; None: no BDAT yet
    body_deadline: float = 0.0  # loop time by which the last chunk must have arrived
    started: float = field(default_factory=time.monotonic)  # MAIL FROM, for metrics.py

    @property
    def is_chunking(self) -> bool:
        return self.chunked is not None


def added_capabilities(is_tls: bool) -> list[str]:
    """EHLO keywords beyond policy.capabilities: RFC 3030 CHUNKING and BINARYMIME, and
    RFC 8689 REQUIRETLS, which only means something on a connection already under TLS."""
    return ["CHUNKING", "BINARYMIME", *(["REQUIRETLS"] if is_tls else [])]


class BodySession(Protocol):
    """What the DATA and BDAT handlers use of the session (smtp/session.py)."""

    transaction: Transaction | None
    conn: SmtpConnection
    receiver: Receiver
    deadline: float
    is_closing: bool

    @property
    def size_limit(self) -> int: ...
    def body_deadline(self) -> float: ...
    def refuse(self, reply: Reply) -> None: ...
    def send(self, reply: Reply) -> None: ...
    def reset_transaction(self) -> None: ...
    def finish_transaction(self, reply: Reply, size: int = 0) -> None: ...
    async def complete_message(self, size: int) -> None: ...


class BodyReceiver:
    """The DATA and BDAT handlers of one session."""

    def __init__(self, session: BodySession) -> None:
        self._session = session
        self._refusal: Reply | None = None  # the reply owed at the end of a dropped chunk

    # -- DATA (RFC 5321 §4.1.1.4) ---------------------------------------------------------

    async def handle_data(self, command: Data) -> None:
        session = self._session
        transaction = session.transaction
        refusal = _data_refusal(transaction)
        if refusal is not None or transaction is None:
            session.refuse(refusal or replies.NEED_MAIL)
            return
        transaction.spool = session.receiver.open_spool(transaction.queue_id)
        session.send(replies.START_DATA)
        session.conn.begin_data(session.size_limit)

    async def handle_chunk(self, chunk: DataChunk) -> None:
        """Octets of a DATA body or a BDAT chunk, into the spool."""
        transaction = self._session.transaction
        if transaction is None or transaction.spool is None:
            return  # the spool failed earlier; the parser still consumes to the end
        await transaction.spool.write(chunk.data)  # errors: see the session's dispatch

    async def handle_data_end(self, end: DataEnd) -> None:
        await self._session.complete_message(end.size)

    async def handle_size_exceeded(self, event: SizeExceeded) -> None:
        session = self._session
        session.finish_transaction(replies.size_too_big(session.size_limit), event.size)

    async def handle_bare_newline(self, event: BareNewline) -> None:
        session = self._session
        session.finish_transaction(replies.BARE_NEWLINE_DATA)
        session.is_closing = True  # what the client thinks it sent is not what we read

    # -- BDAT (RFC 3030) -----------------------------------------------------------------

    async def handle_bdat(self, command: Bdat) -> None:
        session = self._session
        transaction = session.transaction
        refusal = self._refusal_for(transaction, command)
        if refusal is not None or transaction is None:
            session.conn.discard_chunk()
            self._refusal = refusal or replies.NEED_MAIL
            return
        if transaction.spool is None and not transaction.is_chunking:
            transaction.spool = session.receiver.open_spool(transaction.queue_id)
            transaction.chunked = 0
            transaction.body_deadline = session.body_deadline()
        session.deadline = transaction.body_deadline  # the chunk's octets are body

    def _refusal_for(self, transaction: Transaction | None, command: Bdat) -> Reply | None:
        if transaction is None:
            return replies.NEED_MAIL
        if not transaction.recipients:
            return replies.NO_VALID_RECIPIENTS
        limit = self._session.size_limit
        if limit and (transaction.chunked or 0) + command.size > limit:
            return replies.size_too_big(limit)  # refused before a byte of it is kept
        return None

    async def handle_chunk_end(self, end: ChunkEnd) -> None:
        session = self._session
        transaction = session.transaction
        if self._refusal is not None:
            refusal, self._refusal = self._refusal, None
            session.refuse(refusal)
            session.reset_transaction()  # §2: a failed BDAT fails the whole transaction
            return
        if transaction is None or transaction.chunked is None:  # not after handle_bdat
            session.finish_transaction(replies.LOCAL_ERROR)
            return
        transaction.chunked += end.size
        if transaction.spool is None:  # writing the spool failed (logged by dispatch)
            session.finish_transaction(replies.LOCAL_ERROR, transaction.chunked)
            return
        if end.is_last:
            await session.complete_message(transaction.chunked)
        else:
            session.send(replies.chunk_received(end.size))

    async def handle_bad_bdat(self, event: BadBdat) -> None:
        session = self._session
        session.reset_transaction()
        session.send(replies.BAD_BDAT)
        session.is_closing = True


def _data_refusal(transaction: Transaction | None) -> Reply | None:
    """Why DATA may not start, if it may not."""
    if transaction is None:
        return replies.NEED_MAIL
    if not transaction.recipients:
        return replies.NO_VALID_RECIPIENTS  # RFC 2920 §3.1
    if transaction.is_chunking:
        return replies.DATA_AFTER_BDAT  # RFC 3030 §2: BDAT and DATA do not mix
    if transaction.params.is_binarymime:
        return replies.BINARYMIME_NEEDS_BDAT  # RFC 3030 §3
    return None
