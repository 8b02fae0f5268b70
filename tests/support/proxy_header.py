"""PROXY protocol headers as a load balancer writes them, for tests (HAProxy's
proxy-protocol.txt §2.1 and §2.2). Deliberately written apart from the parser."""

from __future__ import annotations

import ipaddress
import struct

SIGNATURE = bytes([0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A])


def v1(source: str, destination: str, source_port: int, destination_port: int) -> bytes:
    family = "TCP6" if ":" in source else "TCP4"
    return f"PROXY {family} {source} {destination} {source_port} {destination_port}\r\n".encode()


def tlv(kind: int, value: bytes) -> bytes:
    return struct.pack("!BH", kind, len(value)) + value


def v2(source: str, destination: str, source_port: int, destination_port: int,
       tlvs: bytes = b"") -> bytes:
    """A PROXY command over TCP (0x21, then AF_INET/AF_INET6 + STREAM)."""
    src, dst = ipaddress.ip_address(source), ipaddress.ip_address(destination)
    family = 0x11 if src.version == 4 else 0x21
    block = src.packed + dst.packed + struct.pack("!HH", source_port, destination_port)
    return v2_raw(0x21, family, block + tlvs)


def v2_local(payload: bytes = b"") -> bytes:
    """A LOCAL command (the balancer's own health check); any payload is ignored."""
    return v2_raw(0x20, 0x00, payload)


def v2_raw(version_command: int, family: int, payload: bytes) -> bytes:
    return SIGNATURE + bytes([version_command, family]) + struct.pack("!H", len(payload)) + payload
