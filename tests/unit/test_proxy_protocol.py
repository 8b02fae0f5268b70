"""The PROXY protocol parser (security/proxy_protocol.py): HAProxy v1 text and v2 binary
headers, incomplete input asking only for bytes the header still lacks, malformed input
refused; and the PROXY_PROTOCOL_TRUSTED_NETWORKS key."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postroom.config import ConfigError, load_config
from postroom.errors import BadSyntax
from postroom.security.proxy_listener import is_trusted_proxy
from postroom.security.proxy_protocol import (
    V1_MAX_LENGTH,
    V2_MAX_PAYLOAD,
    Endpoint,
    NeedMore,
    ProxyHeader,
    parse_proxy_header,
)
from tests.support import proxy_header as encode

CLIENT_DATA = b"\x16\x03\x01\x02\x00"  # what follows the header: a ClientHello, say


def parsed(data: bytes) -> ProxyHeader:
    result = parse_proxy_header(data + CLIENT_DATA)
    assert isinstance(result, ProxyHeader)
    assert result.length == len(data)
    return result


# -- version 1 ------------------------------------------------------------------------------


def test_v1_tcp4() -> None:
    header = parsed(b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 25\r\n")
    assert header.version == 1
    assert header.source == Endpoint("203.0.113.7", 56324)
    assert header.destination == Endpoint("192.0.2.1", 25)


def test_v1_tcp6_is_normalised() -> None:
    header = parsed(b"PROXY TCP6 2001:DB8:0:0::7 2001:db8::1 65535 993\r\n")
    assert header.source == Endpoint("2001:db8::7", 65535)
    assert header.destination == Endpoint("2001:db8::1", 993)


@pytest.mark.parametrize("line", [b"PROXY UNKNOWN\r\n",
                                  b"PROXY UNKNOWN ffff:f...f:ffff 1.2.3.4 0 0\r\n"])
def test_v1_unknown_means_the_tcp_peer(line: bytes) -> None:
    header = parsed(line)
    assert header.source is None and header.destination is None


def test_v1_longest_headers_fit() -> None:
    full = "ffff:" * 7 + "ffff"
    line = f"PROXY TCP6 {full} {full} 65535 65535\r\n".encode()
    assert parsed(line).source == Endpoint(full, 65535)
    longest = f"PROXY UNKNOWN {full} {full} 65535 65535\r\n".encode()  # §2.1's worst case
    assert len(longest) == V1_MAX_LENGTH
    assert parsed(longest).source is None


@pytest.mark.parametrize("line", [
    b"PROXY TCP4 203.0.113.7 192.0.2.1 56324\r\n",  # a field missing
    b"PROXY TCP4  203.0.113.7 192.0.2.1 56324 25\r\n",  # two spaces
    b"PROXY TCP5 203.0.113.7 192.0.2.1 56324 25\r\n",
    b"PROXY TCP4 2001:db8::7 192.0.2.1 56324 25\r\n",  # family and address disagree
    b"PROXY TCP6 203.0.113.7 2001:db8::1 56324 25\r\n",
    b"PROXY TCP4 203.0.113.07 192.0.2.1 56324 25\r\n",  # leading zero in an octet
    b"PROXY TCP4 203.0.113.7 192.0.2.1 056324 25\r\n",  # leading zero in a port
    b"PROXY TCP4 203.0.113.7 192.0.2.1 65536 25\r\n",
    b"PROXY TCP4 203.0.113.7 192.0.2.1 -1 25\r\n",
    b"PROXY TCP6 fe80::1%eth0 2001:db8::1 1 25\r\n",
    b"PROXY TCP4 203.0.113.7 192.0.2.1 1\n 25\r\n",  # stray LF
    b"PROXY TCP4 203.0.113.7 192.0.2.1 1 25\n",  # no CR before the LF
    b"PROXY TCP4 h\xc3\xa9.example 192.0.2.1 1 25\r\n",
    b"PROXY \r\n",
])
def test_v1_malformed(line: bytes) -> None:
    with pytest.raises(BadSyntax):
        parse_proxy_header(line)


def test_v1_without_crlf_within_107_bytes_is_refused() -> None:
    with pytest.raises(BadSyntax):
        parse_proxy_header(b"PROXY UNKNOWN " + b"x" * 100)


# -- version 2 ------------------------------------------------------------------------------


def test_v2_ipv4() -> None:
    header = parsed(encode.v2("203.0.113.7", "192.0.2.1", 40000, 993))
    assert header.version == 2
    assert header.source == Endpoint("203.0.113.7", 40000)
    assert header.destination == Endpoint("192.0.2.1", 993)


def test_v2_ipv6() -> None:
    header = parsed(encode.v2("2001:db8::7", "2001:db8::1", 1, 65535))
    assert header.source == Endpoint("2001:db8::7", 1)
    assert header.destination == Endpoint("2001:db8::1", 65535)


def test_v2_tlvs_are_skipped() -> None:
    tlvs = encode.tlv(0x01, b"imap") + encode.tlv(0x20, b"\x07" + b"\x00" * 4) + encode.tlv(
        0x04, b"")  # ALPN, SSL, NOOP
    header = parsed(encode.v2("203.0.113.7", "192.0.2.1", 40000, 993, tlvs))
    assert header.source == Endpoint("203.0.113.7", 40000)


def test_v2_local_means_the_tcp_peer_and_ignores_its_payload() -> None:
    header = parsed(encode.v2_local(b"\x00" * 12 + b"junk"))
    assert header.source is None and header.version == 2


@pytest.mark.parametrize("family", [0x00, 0x01, 0x31])  # AF_UNSPEC (any transport), AF_UNIX
def test_v2_without_an_internet_client_means_the_tcp_peer(family: int) -> None:
    payload = b"\x00" * (216 if family == 0x31 else 0)
    assert parsed(encode.v2_raw(0x21, family, payload)).source is None


@pytest.mark.parametrize("data", [
    encode.v2_raw(0x11, 0x11, b"\x00" * 12),  # version 1 in binary
    encode.v2_raw(0x22, 0x11, b"\x00" * 12),  # command 2
    encode.v2_raw(0x21, 0x12, b"\x00" * 12),  # DGRAM
    encode.v2_raw(0x21, 0x41, b"\x00" * 12),  # family 4
    encode.v2_raw(0x21, 0x11, b"\x00" * 11),  # address block too short
    encode.v2_raw(0x21, 0x21, b"\x00" * 12),  # an IPv4-sized block for IPv6
    encode.v2("203.0.113.7", "192.0.2.1", 1, 2, b"\x01\x00"),  # truncated TLV head
    encode.v2("203.0.113.7", "192.0.2.1", 1, 2, b"\x01\x00\x05abc"),  # TLV past the end
])
def test_v2_malformed(data: bytes) -> None:
    with pytest.raises(BadSyntax):
        parse_proxy_header(data)


def test_v2_length_is_capped() -> None:
    data = encode.v2_raw(0x21, 0x11, b"\x00" * (V2_MAX_PAYLOAD + 1))
    with pytest.raises(BadSyntax):
        parse_proxy_header(data[:16])  # refused from the fixed part, before the payload


# -- detection and incomplete input ------------------------------------------------------------


@pytest.mark.parametrize("data", [b"EHLO client.example\r\n", b"\x16\x03\x01\x02\x00",
                                  b"a1 LOGIN u p\r\n", b"PROXY2", b"\r\n\r\n\x00\r\nQUIX"])
def test_anything_else_is_not_a_header(data: bytes) -> None:
    with pytest.raises(BadSyntax):
        parse_proxy_header(data)


HEADERS = [
    b"PROXY UNKNOWN\r\n",
    b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 25\r\n",
    encode.v2("2001:db8::7", "2001:db8::1", 1, 2, encode.tlv(0x02, b"mail.example")),
    encode.v2_local(),
]


@pytest.mark.parametrize("header", HEADERS)
def test_every_prefix_asks_for_more_and_never_past_the_header(header: bytes) -> None:
    for cut in range(len(header)):
        result = parse_proxy_header(header[:cut])
        assert isinstance(result, NeedMore), cut
        assert 1 <= result.at_least <= len(header) - cut, cut


@pytest.mark.parametrize("header", HEADERS)
def test_reading_exactly_what_is_asked_ends_at_the_header(header: bytes) -> None:
    stream = header + CLIENT_DATA
    data = b""
    while isinstance(result := parse_proxy_header(data), NeedMore):
        data += stream[len(data):len(data) + result.at_least]
    assert data == header and result.length == len(header)


# -- round trip ---------------------------------------------------------------------------------

ipv4 = st.builds(ipaddress.IPv4Address, st.integers(0, 2**32 - 1))
ipv6 = st.builds(ipaddress.IPv6Address, st.integers(0, 2**128 - 1))
ports = st.integers(0, 65535)
tlv_lists = st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=40)), max_size=4)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.tuples(ipv4, ipv4), st.tuples(ipv6, ipv6)), ports, ports, tlv_lists,
       st.booleans())
def test_round_trip(addresses: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...],
                    source_port: int, destination_port: int,
                    tlvs: list[tuple[int, bytes]], is_binary: bool) -> None:
    source, destination = (str(address) for address in addresses)
    if is_binary:
        data = encode.v2(source, destination, source_port, destination_port,
                         b"".join(encode.tlv(kind, value) for kind, value in tlvs))
    else:
        data = encode.v1(source, destination, source_port, destination_port)
    header = parsed(data)
    assert header.source == Endpoint(source, source_port)
    assert header.destination == Endpoint(destination, destination_port)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_parse_or_fail_cleanly(data: bytes) -> None:
    try:
        result = parse_proxy_header(data)
    except BadSyntax:
        return
    if isinstance(result, ProxyHeader):
        assert result.length <= len(data)
    else:
        assert result.at_least >= 1


# -- the trust decision and the config key -----------------------------------------------------


def test_trusted_proxy_matching() -> None:
    networks = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::5")]
    assert is_trusted_proxy("10.1.2.3", networks)
    assert is_trusted_proxy("::ffff:10.1.2.3", networks)  # dual-stack spelling
    assert is_trusted_proxy("2001:db8::5", networks)
    assert not is_trusted_proxy("2001:db8::6", networks)
    assert not is_trusted_proxy("192.0.2.1", networks)
    assert not is_trusted_proxy("not-an-address", networks)


def test_config_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ./postroom.env in the way
    config = load_config(None, {"PROXY_PROTOCOL_TRUSTED_NETWORKS": "10.0.0.0/8, 2001:db8::5"}
                         ).config
    assert config.proxy_networks == [ipaddress.ip_network("10.0.0.0/8"),
                                     ipaddress.ip_network("2001:db8::5/128")]
    assert load_config(None, {}).config.proxy_networks == []  # off by default
    with pytest.raises(ConfigError, match="PROXY_PROTOCOL_TRUSTED_NETWORKS"):
        load_config(None, {"PROXY_PROTOCOL_TRUSTED_NETWORKS": "10.0.0.0/33"})
