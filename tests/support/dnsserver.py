"""A real authoritative DNS server for tests, on 127.0.0.1 UDP and TCP (same ephemeral port).

Serves names loaded from BIND zone text (`dns.zone.from_text` with an origin) and records
added at run time; answers NXDOMAIN for names that do not exist and NOERROR with an empty
answer for existing names (including empty non-terminals such as `_domainkey.example.com`)
without the asked type; follows CNAMEs inside its data; truncates (TC) UDP answers larger
than the client's limit so resolvers retry over TCP. `fail(name, "servfail" | "drop")`
makes a name fail, to test temporary errors. `secure(zone)` sets the AD bit on answers
for the zone and below, as a validating resolver would (outbound DANE, decision 0046).
Names outside the data are answered NXDOMAIN (the server is authoritative for everything
it is asked). dnspython only accepts an SOA at the origin of loaded zone text; with the
default origin "." leave SOAs out (negative answers
then carry no SOA and are not cached by resolvers, which suits tests that change data).
Runs in background threads, so it also serves `postroom serve` subprocesses: pass
`server.address` as DNS_NAMESERVERS.

    with DnsTestServer(ZONE, origin="example.com.") as server:
        resolver = LiveResolver([server.nameserver])
"""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
from types import TracebackType

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.rrset
import dns.zone

from postroom.config import Nameserver

Key = tuple[dns.name.Name, dns.rdatatype.RdataType]
_MAX_CNAME_CHAIN = 8


class DnsTestServer:
    def __init__(self, zone_text: str = "", origin: str = ".") -> None:
        self._lock = threading.Lock()
        self._data: dict[Key, dns.rdataset.Rdataset] = {}
        self._failures: dict[dns.name.Name, str] = {}
        self._secure: set[dns.name.Name] = set()
        self.queries: list[tuple[str, str]] = []
        self._servers: list[socketserver.BaseServer] = []
        self._threads: list[threading.Thread] = []
        self.port = 0
        if zone_text:
            self.load_zone(zone_text, origin)

    # -- data --------------------------------------------------------------------------

    def load_zone(self, text: str, origin: str) -> None:
        zone = dns.zone.from_text(text, origin=_name(origin), relativize=False,
                                  check_origin=False)
        with self._lock:
            for name, node in zone.nodes.items():
                for rdataset in node.rdatasets:
                    self._data[(name, rdataset.rdtype)] = rdataset

    def add(self, name: str, rdtype: str, *values: str, ttl: int = 60) -> None:
        """Add records; TXT values are plain text (split into 255-octet strings here)."""
        key = (_name(name), dns.rdatatype.from_text(rdtype))
        with self._lock:
            rdataset = self._data.setdefault(key, dns.rdataset.Rdataset(
                dns.rdataclass.IN, key[1]))
            rdataset.update_ttl(ttl)
            for value in values:
                rdataset.add(_rdata(key[1], value), ttl)

    def replace(self, name: str, rdtype: str, *values: str, ttl: int = 60) -> None:
        self.remove(name, rdtype)
        self.add(name, rdtype, *values, ttl=ttl)

    def remove(self, name: str, rdtype: str | None = None) -> None:
        qname = _name(name)
        with self._lock:
            for key in list(self._data):
                if key[0] == qname and (rdtype is None
                                        or key[1] == dns.rdatatype.from_text(rdtype)):
                    del self._data[key]

    def fail(self, name: str, mode: str = "servfail") -> None:
        """Make queries for `name` fail: "servfail" answers SERVFAIL, "drop" never answers."""
        if mode not in {"servfail", "drop"}:
            raise ValueError(mode)
        with self._lock:
            self._failures[_name(name)] = mode

    def heal(self, name: str) -> None:
        with self._lock:
            self._failures.pop(_name(name), None)

    def secure(self, zone: str, is_secure: bool = True) -> None:
        """Answers for `zone` and names below it carry the AD bit (or stop carrying it)."""
        with self._lock:
            (self._secure.add if is_secure else self._secure.discard)(_name(zone))

    # -- answering ---------------------------------------------------------------------

    def respond(self, query: dns.message.Message) -> dns.message.Message | None:
        """The reply to one query, or None to stay silent."""
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return response
        question = query.question[0]
        with self._lock:
            self.queries.append((question.name.to_text(), dns.rdatatype.to_text(
                question.rdtype)))
            mode = self._failures.get(question.name)
            if mode == "drop":
                return None
            if mode == "servfail":
                response.set_rcode(dns.rcode.SERVFAIL)
                return response
            self._fill(response, question.name, question.rdtype)
            if any(question.name.is_subdomain(zone) for zone in self._secure):
                response.flags |= dns.flags.AD
        return response

    def _fill(self, response: dns.message.Message, qname: dns.name.Name,
              rdtype: dns.rdatatype.RdataType) -> None:
        name = qname
        for _ in range(_MAX_CNAME_CHAIN):
            found = self._data.get((name, rdtype))
            if found is not None:
                response.answer.append(_rrset(name, found))
                return
            cname = self._data.get((name, dns.rdatatype.CNAME))
            if cname is None or rdtype == dns.rdatatype.CNAME:
                break
            response.answer.append(_rrset(name, cname))
            name = next(iter(cname)).target
        if not self._exists(name):
            response.set_rcode(dns.rcode.NXDOMAIN)
        soa = self._closest_soa(name)
        if soa is not None:
            response.authority.append(soa)

    def _exists(self, name: dns.name.Name) -> bool:
        return any(key[0].is_subdomain(name) for key in self._data)

    def _closest_soa(self, name: dns.name.Name) -> dns.rrset.RRset | None:
        for depth in range(len(name.labels)):
            owner = name.split(len(name.labels) - depth)[1] if depth else name
            found = self._data.get((owner, dns.rdatatype.SOA))
            if found is not None:
                return _rrset(owner, found)
        return None

    def answer_wire(self, wire: bytes, *, udp: bool) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None
        response = self.respond(query)
        if response is None:
            return None
        limit = max(512, query.payload) if udp and query.edns >= 0 else 512 if udp else 65535
        try:
            return response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            # RFC 1035 §4.2.1 / RFC 7766: tell the client to retry over TCP.
            response.answer.clear()
            response.authority.clear()
            response.flags |= dns.flags.TC
            return response.to_wire(max_size=limit)

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def address(self) -> str:
        """"127.0.0.1:port", the DNS_NAMESERVERS form."""
        return f"127.0.0.1:{self.port}"

    @property
    def nameserver(self) -> Nameserver:
        return Nameserver("127.0.0.1", self.port)

    def start(self) -> DnsTestServer:
        owner = self

        class UdpHandler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data, sock = self.request
                reply = owner.answer_wire(data, udp=True)
                if reply is not None:
                    sock.sendto(reply, self.client_address)

        class TcpHandler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.settimeout(10)
                while True:
                    header = _recv_exact(self.request, 2)
                    if header is None:
                        return
                    data = _recv_exact(self.request, struct.unpack("!H", header)[0])
                    if data is None:
                        return
                    reply = owner.answer_wire(data, udp=False)
                    if reply is not None:
                        self.request.sendall(struct.pack("!H", len(reply)) + reply)

        self._bind(UdpHandler, TcpHandler)
        for server in self._servers:
            thread = threading.Thread(target=server.serve_forever, kwargs={
                "poll_interval": 0.05}, daemon=True, name=f"dns-test-{self.port}")
            thread.start()
            self._threads.append(thread)
        return self

    def _bind(self, udp_handler: type[socketserver.BaseRequestHandler],
              tcp_handler: type[socketserver.BaseRequestHandler]) -> None:
        last_error: OSError | None = None
        for _ in range(20):  # the ephemeral UDP port may already be taken for TCP
            udp = socketserver.UDPServer(("127.0.0.1", 0), udp_handler)
            port = udp.server_address[1]
            try:
                tcp = _TcpServer(("127.0.0.1", port), tcp_handler)
            except OSError as exc:
                udp.server_close()
                last_error = exc
                continue
            self._servers = [udp, tcp]
            self.port = port
            return
        raise RuntimeError(f"could not bind UDP and TCP on one port: {last_error}")

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers, self._threads = [], []

    def __enter__(self) -> DnsTestServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()


class _TcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = False


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < size:
        try:
            chunk = sock.recv(size - len(chunks))
        except OSError:
            return None
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)


def _name(text: str) -> dns.name.Name:
    return dns.name.from_text(text if text.endswith(".") else text + ".")


def _rdata(rdtype: dns.rdatatype.RdataType, value: str) -> dns.rdata.Rdata:
    if rdtype == dns.rdatatype.TXT and not value.startswith('"'):
        raw = value.encode()
        chunks = [raw[i:i + 255] for i in range(0, max(len(raw), 1), 255)]
        return dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, chunks)
    return dns.rdata.from_text(dns.rdataclass.IN, rdtype, value)


def _rrset(name: dns.name.Name, rdataset: dns.rdataset.Rdataset) -> dns.rrset.RRset:
    rrset = dns.rrset.RRset(name, rdataset.rdclass, rdataset.rdtype)
    rrset.update(rdataset)
    return rrset
