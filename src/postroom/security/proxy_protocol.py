"""The PROXY protocol header (HAProxy's text version 1 and binary version 2), sans-IO.

Owns recognising and decoding the header a TCP load balancer sends before the client's
first byte, so bans, limits, Received headers and SPF see the real client (issue 10).
The reference is HAProxy's "The PROXY protocol" (doc/proxy-protocol.txt, versions 1 and 2);
section numbers below are that document's.

Invariants: `parse_proxy_header` never asks for a byte past the header — `NeedMore.at_least`
is a lower bound of what the header still lacks — so a reader that reads exactly that
many bytes leaves the client's own first bytes (an implicit-TLS ClientHello) unread.
No header is accepted longer than `V1_MAX_LENGTH` or `V2_HEADER_LENGTH + V2_MAX_PAYLOAD`;
anything that is not a well-formed header raises BadSyntax. A header that does not name
a TCP client (LOCAL, UNKNOWN, AF_UNSPEC, AF_UNIX) has `source` None: the caller then uses
the TCP peer, as §2.1 and §2.2 say the receiver must.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from postroom.errors import BadSyntax

V1_PREFIX = b"PROXY "
V1_MIN_LENGTH = len(b"PROXY UNKNOWN\r\n")
V1_MAX_LENGTH = 107  # §2.1: the worst case, TCP6 with two full addresses, CRLF included

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"  # §2.2: twelve bytes no text protocol starts with
V2_HEADER_LENGTH = 16
# The address block is at most 216 bytes (AF_UNIX); the rest are TLVs. HAProxy's own
# TLVs (ALPN, SNI, SSL details, unique id) fit easily; a bigger header is not one we trust.
V2_MAX_PAYLOAD = 4096

_V2_LOCAL, _V2_PROXY = 0x0, 0x1
_AF_UNSPEC, _AF_INET, _AF_INET6, _AF_UNIX = 0x0, 0x1, 0x2, 0x3
_STREAM = 0x1
_ADDRESS_BLOCK = {_AF_INET: 12, _AF_INET6: 36, _AF_UNIX: 216}  # §2.2, bytes per family
_TLV_HEAD = 3  # type (1 byte) and length (2 bytes, network order)
_PORT = re.compile(r"0|[1-9][0-9]{0,4}")  # §2.1: decimal, no leading zeros


@dataclass(frozen=True, slots=True)
class Endpoint:
    address: str  # normalised text of an IPv4 or IPv6 address
    port: int


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    version: int  # 1 or 2
    length: int  # bytes the header took; the client's data starts after them
    source: Endpoint | None  # the real client; None: use the TCP peer
    destination: Endpoint | None


@dataclass(frozen=True, slots=True)
class NeedMore:
    """The header is incomplete: read at least (and, to stay exact, at most) this many
    further bytes, then parse everything read so far again."""

    at_least: int


def parse_proxy_header(data: bytes) -> ProxyHeader | NeedMore:
    """The header at the start of `data` (which may go on past it), or what is missing."""
    if not data:
        return NeedMore(min(V1_MIN_LENGTH, V2_HEADER_LENGTH))
    if data.startswith(V2_SIGNATURE):
        return _parse_v2(data)
    if data.startswith(V1_PREFIX):
        return _parse_v1(data)
    if V2_SIGNATURE.startswith(data):
        return NeedMore(V2_HEADER_LENGTH - len(data))
    if V1_PREFIX.startswith(data):
        return NeedMore(V1_MIN_LENGTH - len(data))
    raise BadSyntax("no PROXY protocol header")


# -- version 1 (§2.1) ---------------------------------------------------------------------


def _parse_v1(data: bytes) -> ProxyHeader | NeedMore:
    end = data.find(b"\r\n", 0, V1_MAX_LENGTH)
    if end < 0:
        if len(data) >= V1_MAX_LENGTH:
            raise BadSyntax("PROXY v1 header longer than 107 bytes")
        if b"\n" in data or b"\r" in data[:-1]:
            raise BadSyntax("PROXY v1 header with a stray CR or LF")
        still_missing = 1 if data.endswith(b"\r") else 2  # at least the CRLF
        return NeedMore(max(V1_MIN_LENGTH - len(data), still_missing))
    line = data[:end]
    if b"\r" in line or b"\n" in line:
        raise BadSyntax("PROXY v1 header with a stray CR or LF")
    try:
        fields = line.decode("ascii").split(" ")  # exactly one space between fields
    except UnicodeDecodeError:
        raise BadSyntax("PROXY v1 header is not ASCII") from None
    length = end + 2
    if fields[1] == "UNKNOWN":  # whatever follows is to be ignored
        return ProxyHeader(1, length, None, None)
    if fields[1] not in ("TCP4", "TCP6") or len(fields) != 6:
        raise BadSyntax("PROXY v1 header: expected TCP4, TCP6 or UNKNOWN and four fields")
    version = 4 if fields[1] == "TCP4" else 6
    source = Endpoint(_v1_address(fields[2], version), _v1_port(fields[4]))
    destination = Endpoint(_v1_address(fields[3], version), _v1_port(fields[5]))
    return ProxyHeader(1, length, source, destination)


def _v1_address(text: str, version: int) -> str:
    if "%" in text:  # an IPv6 zone id means nothing on the far side of a proxy
        raise BadSyntax("PROXY v1 address with a zone id")
    try:
        address = ipaddress.ip_address(text)  # refuses IPv4 octets with leading zeros
    except ValueError:
        raise BadSyntax(f"PROXY v1 address {text[:50]!r} is not an IP address") from None
    if address.version != version:
        raise BadSyntax(f"PROXY v1 address {text[:50]!r} is not IPv{version}")
    return str(address)


def _v1_port(text: str) -> int:
    if not _PORT.fullmatch(text) or int(text) > 65535:
        raise BadSyntax(f"PROXY v1 port {text[:10]!r} is not 0-65535")
    return int(text)


# -- version 2 (§2.2) ---------------------------------------------------------------------


def _parse_v2(data: bytes) -> ProxyHeader | NeedMore:
    if len(data) < V2_HEADER_LENGTH:
        return NeedMore(V2_HEADER_LENGTH - len(data))
    version, command = data[12] >> 4, data[12] & 0x0F
    if version != 2:
        raise BadSyntax(f"PROXY header version {version}, expected 2")
    if command not in (_V2_LOCAL, _V2_PROXY):
        raise BadSyntax(f"PROXY v2 command {command} is neither LOCAL nor PROXY")
    payload_length = int.from_bytes(data[14:16], "big")
    if payload_length > V2_MAX_PAYLOAD:
        raise BadSyntax(f"PROXY v2 header of {payload_length} bytes is too long")
    length = V2_HEADER_LENGTH + payload_length
    if len(data) < length:
        return NeedMore(length - len(data))
    if command == _V2_LOCAL:
        # The balancer's own connection (a health check): the address block is ignored.
        return ProxyHeader(2, length, None, None)
    family, transport = data[13] >> 4, data[13] & 0x0F
    if family == _AF_UNSPEC:  # unknown to the sender: the receiver uses the real peer
        return ProxyHeader(2, length, None, None)
    return _parse_v2_addresses(family, transport, data[V2_HEADER_LENGTH:length], length)


def _parse_v2_addresses(family: int, transport: int, payload: bytes,
                        length: int) -> ProxyHeader:
    block_size = _ADDRESS_BLOCK.get(family)
    if block_size is None:
        raise BadSyntax(f"PROXY v2 address family {family} is unknown")
    if transport != _STREAM:
        raise BadSyntax("PROXY v2 header for a connection that is not a stream")
    if len(payload) < block_size:
        raise BadSyntax("PROXY v2 address block is truncated")
    _check_tlvs(payload[block_size:])
    if family == _AF_UNIX:  # the client is local to the balancer: no address to show
        return ProxyHeader(2, length, None, None)
    size = 4 if family == _AF_INET else 16
    source = ipaddress.ip_address(payload[:size])
    destination = ipaddress.ip_address(payload[size:2 * size])
    ports = payload[2 * size:block_size]
    return ProxyHeader(
        2, length,
        Endpoint(str(source), int.from_bytes(ports[:2], "big")),
        Endpoint(str(destination), int.from_bytes(ports[2:], "big")),
    )


def _check_tlvs(tlvs: bytes) -> None:
    """The TLVs after the address block (§2.2.7) are ignored, but must add up exactly."""
    offset = 0
    while offset < len(tlvs):
        if offset + _TLV_HEAD > len(tlvs):
            raise BadSyntax("PROXY v2 TLV header is truncated")
        offset += _TLV_HEAD + int.from_bytes(tlvs[offset + 1:offset + _TLV_HEAD], "big")
        if offset > len(tlvs):
            raise BadSyntax("PROXY v2 TLV runs past the header")
