"""Messages with ARC chains for the ARC tests: an original DKIM-signed by its author's
domain, then a forwarder (a mailing list) that changes it, records what it saw in an
Authentication-Results field and seals it with dkimpy's own `arc_sign` (the reference
implementation, not our sealing code), as the forwarders whose chains we judge do."""

from __future__ import annotations

import re

import dkim

from postroom.mailauth.keys import generate_private_key, public_txt_value, rsa_pkcs1_pem

SELECTOR = "sel"
KEYS = {domain: generate_private_key(bits=1024)
        for domain in ("orig.test", "fwd.test", "list.test", "lax.test")}


def key_records() -> dict[str, str]:
    """name → TXT value of every test key (zone content and dkimpy dnsfuncs)."""
    return {f"{SELECTOR}._domainkey.{domain}": public_txt_value(key)
            for domain, key in KEYS.items()}


def dnsfunc_of(records: dict[str, str]):  # type: ignore[no-untyped-def]
    def dnsfunc(name: bytes, timeout: float = 5) -> bytes | None:
        value = records.get(name.decode().rstrip(".").lower())
        return value.encode() if value else None

    return dnsfunc


def original(author: str, to: str, subject: str = "hello", body: str = "Hi there.\r\n"
             ) -> bytes:
    """A message DKIM-signed by its author's domain (when it has a test key)."""
    domain = author.rpartition("@")[2]
    raw = (f"From: {author}\r\nTo: {to}\r\nSubject: {subject}\r\n"
           f"Date: Sat, 28 Nov 2026 00:00:00 +0000\r\nMessage-ID: <m-{subject}@x.test>\r\n"
           f"MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n{body}").encode()
    if domain not in KEYS:
        return raw
    signature = dkim.sign(raw, SELECTOR.encode(), domain.encode(),
                          rsa_pkcs1_pem(KEYS[domain]),
                          include_headers=[b"from", b"to", b"subject", b"date"])
    return signature + raw


def forwarded(raw: bytes, sealer: str, *, tag: str = "[list]") -> bytes:
    """`raw` as a mailing list at `sealer` sends it on: Subject tagged and a footer added
    (which breaks the author's DKIM signature), its own A-R, then an ARC set."""
    author_domain = re.search(rb"^From: .*@([^>\s]+)", raw, re.M).group(1).decode()  # type: ignore[union-attr]
    changed = raw.replace(b"Subject: ", f"Subject: {tag} ".encode(), 1) \
        + b"--\r\nlist footer\r\n"
    results = (f"Authentication-Results: {sealer}; spf=pass smtp.mailfrom={author_domain};"
               f"\r\n dkim=pass header.d={author_domain}; dmarc=pass header.from="
               f"{author_domain}\r\n").encode()
    if b"ARC-Seal:" in raw:
        results = results.replace(b"; spf=pass", b"; arc=pass; spf=pass", 1)
    message = results + changed
    arc_set = dkim.arc_sign(message, SELECTOR.encode(), sealer.encode(),
                            rsa_pkcs1_pem(KEYS[sealer]), sealer.encode())
    assert arc_set, "dkimpy made no ARC set"
    return b"".join(arc_set) + message


def verify_with_dkimpy(raw: bytes, records: dict[str, str]) -> tuple[bytes | None, str]:
    """dkimpy's verdict on a received message's chain: (cv, reason)."""
    cv, _results, reason = dkim.arc_verify(raw, dnsfunc=dnsfunc_of(records))
    return cv, reason


def arc_instances(raw: bytes) -> list[int]:
    """The i= of every ARC-Seal in the header, top to bottom."""
    header = raw.split(b"\r\n\r\n", 1)[0]
    return [int(m) for m in re.findall(rb"^ARC-Seal: i=(\d+);", header, re.M | re.I)]
