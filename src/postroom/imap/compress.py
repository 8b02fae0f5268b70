"""COMPRESS=DEFLATE as a sans-IO transport layer (RFC 4978).

Owns `DeflateLayer`: raw deflate (RFC 1951, no zlib header: wbits -15) in both directions
for one IMAP connection, and the decompression-bomb limits on what the client sends.

Invariants:
- Output: `compress` feeds the deflater without flushing; `flush` ends the response
  batch with Z_SYNC_FLUSH (RFC 4978 §4: the client must be able to read each response
  without waiting for more), and costs nothing when nothing was written since the last.
- Input: `receive` only queues wire bytes; `inflate` returns at most `chunk_size`
  inflated bytes per call, so one small input never expands in memory beyond one chunk
  before the IMAP parser has seen it: the parser's own line and literal limits
  (imap/wire/connection.py) apply to the inflated stream chunk by chunk. `has_pending`
  says whether another call may yield more without reading the socket.
- A stream that inflates to more than `max_ratio` times its wire size (after the first
  `grace` bytes) or is not valid deflate raises `CompressionError`; the session answers
  `* BYE` and closes. Sans-IO: no asyncio, ssl or socket here.
"""

from __future__ import annotations

import zlib

INFLATE_CHUNK = 64 * 1024
# Real IMAP traffic deflates 3-10x, a repetitive APPEND rarely a hundred times; deflate's
# own ceiling is about 1032x, which only a bomb approaches. The grace lets a session start
# with a well-compressing burst before the ratio applies.
MAX_INFLATE_RATIO = 500
INFLATE_GRACE = 1024 * 1024
WBITS_RAW = -15  # RFC 4978 §3: raw deflate, no zlib or gzip wrapper


class CompressionError(Exception):
    """The client's deflate stream is corrupt or inflates beyond the limits."""


class DeflateLayer:
    """Both directions of one compressed connection. See the module docstring."""

    __slots__ = ("_deflater", "_inflated", "_inflater", "_is_dirty", "_last_was_full",
                 "_pending", "_wire", "chunk_size", "grace", "max_ratio")

    def __init__(self, *, chunk_size: int = INFLATE_CHUNK, max_ratio: int = MAX_INFLATE_RATIO,
                 grace: int = INFLATE_GRACE) -> None:  # fmt: skip
        self._deflater = zlib.compressobj(6, zlib.DEFLATED, WBITS_RAW)
        self._inflater = zlib.decompressobj(WBITS_RAW)
        self._pending = b""  # wire bytes received but not yet given to the inflater
        self._last_was_full = False  # the last inflate filled its chunk: zlib may hold more
        self._is_dirty = False  # compressed output not yet flushed
        self._wire = 0
        self._inflated = 0
        self.chunk_size = chunk_size
        self.max_ratio = max_ratio
        self.grace = grace

    # -- output ----------------------------------------------------------------------------
    def compress(self, data: bytes) -> bytes:
        """Deflate `data`; the result may be empty until `flush`."""
        if not data:
            return b""
        self._is_dirty = True
        return self._deflater.compress(data)

    def flush(self) -> bytes:
        """Z_SYNC_FLUSH: everything compressed so far, decodable by the client now."""
        if not self._is_dirty:
            return b""
        self._is_dirty = False
        return self._deflater.flush(zlib.Z_SYNC_FLUSH)

    # -- input -----------------------------------------------------------------------------
    def receive(self, wire: bytes) -> None:
        """Queue bytes read from the socket; `inflate` takes them in bounded chunks."""
        self._wire += len(wire)
        self._pending += wire

    @property
    def has_pending(self) -> bool:
        """True when `inflate` may return more without new wire bytes."""
        return bool(self._pending) or self._last_was_full

    def inflate(self) -> bytes:
        """At most `chunk_size` bytes of the client's inflated stream (maybe b"")."""
        data, self._pending = self._pending, b""
        try:
            out = self._inflater.decompress(data, self.chunk_size)
        except zlib.error as error:
            raise CompressionError(f"invalid deflate stream: {error}") from error
        if self._inflater.eof:
            # RFC 4978 §3: the stream never ends while the connection lives.
            raise CompressionError("the client ended its deflate stream")
        self._pending = self._inflater.unconsumed_tail
        self._last_was_full = len(out) >= self.chunk_size
        self._inflated += len(out)
        if self._inflated > self.grace + self.max_ratio * self._wire:
            raise CompressionError("compressed input expands too much")
        return out

    @property
    def wire_bytes(self) -> int:
        return self._wire

    @property
    def inflated_bytes(self) -> int:
        return self._inflated
