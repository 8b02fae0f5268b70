"""What a TLS ClientHello asks for, read before the handshake (sans-IO).

Owns reading the first TLS record of a connection far enough to know the ALPN protocols
the client offers (RFC 7301 §3.1), so one listener can hand a `acme-tls/1` validation
connection (RFC 8737 §3) to the challenge certificate and every other connection to the
web certificate: OpenSSL picks the certificate before Python sees the negotiated ALPN,
so the choice has to be made before the handshake starts.

Invariants: reads only what the caller hands in and never more than one record
(`MAX_RECORD`); a record that is not a handshake record is refused with `NotTls`; a
ClientHello cut short or malformed anywhere past the record header yields no
protocols (the connection is then served as HTTPS, whose handshake fails on its own).
Imports nothing from asyncio, ssl or socket.
"""

from __future__ import annotations

RECORD_HEADER = 5  # content type, legacy version, length (RFC 8446 §5.1)
MAX_RECORD = 16384 + 256  # TLSPlaintext.length ≤ 2^14; a little slack for odd stacks
HANDSHAKE = 0x16
CLIENT_HELLO = 0x01
ALPN_EXTENSION = 16  # RFC 7301 §3.1


class NotTls(ValueError):
    """The first bytes are not a TLS handshake record."""


def record_length(header: bytes) -> int:
    """The length of the record whose 5-byte header is `header`; NotTls if it is not a
    handshake record or is longer than a record may be."""
    if len(header) != RECORD_HEADER or header[0] != HANDSHAKE or header[1] != 3:
        raise NotTls("not a TLS handshake record")
    length = int.from_bytes(header[3:5], "big")
    if not 0 < length <= MAX_RECORD:
        raise NotTls(f"TLS record of {length} bytes")
    return length


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def take(self, count: int) -> bytes:
        if self.at + count > len(self.data):
            raise IndexError("short")
        chunk = self.data[self.at:self.at + count]
        self.at += count
        return chunk

    def number(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def vector(self, length_size: int) -> bytes:
        return self.take(self.number(length_size))


def offered_alpn(payload: bytes) -> tuple[str, ...]:
    """The ALPN protocol names in the ClientHello that starts `payload` (the first
    record's payload), in the client's order; () when it offers none or is cut short."""
    try:
        return _offered_alpn(_Reader(payload))
    except (IndexError, UnicodeDecodeError):
        return ()


def _offered_alpn(reader: _Reader) -> tuple[str, ...]:
    if reader.number(1) != CLIENT_HELLO:
        return ()
    reader.take(3)  # handshake length: what the record holds is what is parsed
    reader.take(2 + 32)  # legacy_version, random (RFC 8446 §4.1.2)
    reader.vector(1)  # legacy_session_id
    reader.vector(2)  # cipher_suites
    reader.vector(1)  # legacy_compression_methods
    extensions = _Reader(reader.vector(2))
    while extensions.at < len(extensions.data):
        kind, body = extensions.number(2), extensions.vector(2)
        if kind == ALPN_EXTENSION:
            names = _Reader(_Reader(body).vector(2))
            found = []
            while names.at < len(names.data):
                found.append(names.vector(1).decode("ascii"))
            return tuple(found)
    return ()
