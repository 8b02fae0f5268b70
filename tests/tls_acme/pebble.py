"""Debian's pebble (Let's Encrypt's ACME test server) on loopback, for one test.

Pebble gets its own HTTPS certificate from a trustme CA (the ACME_CA_BUNDLE of the test),
resolves every name through the test DNS server (tests/support/dnsserver.py, answering
127.0.0.1 for the names a test adds), and validates challenges for real against the
ports it is told (`httpPort`/`tlsPort` in its -config). Its issuing root, regenerated at
each start, is fetched from the management port (`/roots/0`) for clients that must trust
what it issued.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
import urllib.request
from pathlib import Path

import pytest
import trustme

from tests.support.dnsserver import DnsTestServer

PEBBLE = shutil.which("pebble")
needs_pebble = pytest.mark.skipif(PEBBLE is None, reason="Debian's pebble is not installed "
                                  "(apt-get install pebble)")


def free_port() -> int:
    """A port free on 127.0.0.1 now; pebble's config needs numbers before it starts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Pebble:
    def __init__(self, folder: Path, ca: trustme.CA, dns: DnsTestServer, *,
                 http_port: int, tls_port: int, validity_seconds: int = 0) -> None:
        self.folder = folder
        self.ca = ca
        self.dns = dns
        self.http_port, self.tls_port = http_port, tls_port
        self.validity_seconds = validity_seconds
        self.port, self.management_port = free_port(), free_port()
        self.ca_bundle = folder / "pebble-https-ca.pem"
        self.output: list[str] = []
        self._ready = threading.Event()
        self.process: subprocess.Popen[str] | None = None

    @property
    def directory(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    def _write_config(self) -> Path:
        cert = self.ca.issue_cert("127.0.0.1", "localhost")
        cert.private_key_pem.write_to_path(self.folder / "pebble-key.pem")
        cert.cert_chain_pems[0].write_to_path(self.folder / "pebble-cert.pem")
        self.ca.cert_pem.write_to_path(self.ca_bundle)
        settings: dict[str, object] = {
            "listenAddress": f"127.0.0.1:{self.port}",
            "managementListenAddress": f"127.0.0.1:{self.management_port}",
            "certificate": str(self.folder / "pebble-cert.pem"),
            "privateKey": str(self.folder / "pebble-key.pem"),
            "httpPort": self.http_port, "tlsPort": self.tls_port,
            "ocspResponderURL": "", "externalAccountBindingRequired": False,
        }
        if self.validity_seconds:
            settings["certificateValidityPeriod"] = self.validity_seconds
        path = self.folder / "pebble-config.json"
        path.write_text(json.dumps({"pebble": settings}))
        return path

    def start(self, timeout: float = 30) -> Pebble:
        assert PEBBLE is not None
        config = self._write_config()
        env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0",
               "PEBBLE_AUTHZREUSE": "0"}  # every order validates for real
        self.process = subprocess.Popen(
            [PEBBLE, "-config", str(config), "-strict=false",
             "-dnsserver", self.dns.address],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        threading.Thread(target=self._read_output, daemon=True).start()
        if not self._ready.wait(timeout):
            self.stop()
            raise RuntimeError("pebble did not start:\n" + "".join(self.output))
        return self

    def _read_output(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            if "ACME directory available" in line:
                self._ready.set()

    def root_pem(self) -> bytes:
        """The root pebble issues under (new at every start)."""
        context = ssl.create_default_context(cafile=str(self.ca_bundle))
        url = f"https://127.0.0.1:{self.management_port}/roots/0"
        with urllib.request.urlopen(url, context=context, timeout=10) as response:
            return bytes(response.read())

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def __enter__(self) -> Pebble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
