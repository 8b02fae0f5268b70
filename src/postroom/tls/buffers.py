"""The per-connection TLS receive buffer of asyncio's own event loop.

Owns one process-wide setting, applied once by `App.start`: the size of the buffer
asyncio's `SSLProtocol` allocates for every TLS connection. asyncio reads ciphertext from
the socket into that buffer and hands it straight on to OpenSSL's incoming memory BIO,
and reads decrypted data out of OpenSSL in chunks of the same size
(`asyncio.sslproto.SSLProtocol.max_size`, a class attribute). Its default is 256 KiB,
allocated and zero-filled when the connection is accepted and kept until it closes, so
10,000 idle IMAP connections in IDLE held 2.5 GiB of buffers that carry a few bytes a
minute (issue 8). A TLS record carries at most 16 KiB of plaintext (RFC 8446 §5.1) and
OpenSSL reassembles records from any number of reads, so a smaller buffer changes only how
many reads a bulk transfer takes, never what arrives.

Invariants: the size only ever goes down (a caller asking for more than the current value
changes nothing), it applies to connections made afterwards, and event loops that bring
their own TLS layer (uvloop, the optional `speed` extra) are not affected — they do not
use `asyncio.sslproto`. OpenSSL's own record buffers are already released between
records: CPython sets SSL_MODE_RELEASE_BUFFERS on every SSLContext it creates.
"""

from __future__ import annotations

import asyncio.sslproto

# Measured on the bench machine (100 MB uploaded into an asyncio TLS server): 4 KiB costs
# ≈3.3 ms of CPU per MB received, against ≈2.8 ms at the 256 KiB default (which allocates
# 256 KiB for every decrypted chunk) and ≈1.7 ms at 16 KiB. Per idle connection it holds
# 4 KiB instead of 256 KiB; 16 KiB would be 120 MiB more at 10,000 IDLE connections, where
# the whole process stays near 410 MiB with 4 KiB (bench/profile_idle.py).
TLS_READ_BUFFER = 4 * 1024


def limit_tls_read_buffer(size: int = TLS_READ_BUFFER) -> int:
    """Cap asyncio's per-connection TLS buffer at `size` bytes; returns the size in force."""
    if size < 1024:
        raise ValueError("a TLS read buffer under 1 KiB would cost a read per few bytes")
    protocol = asyncio.sslproto.SSLProtocol
    protocol.max_size = min(protocol.max_size, size)
    return protocol.max_size
