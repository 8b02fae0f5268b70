"""Reports others send us: mail delivered to a report address is looked at for report
attachments, each handed to the parser registered for its kind (DMARC, TLS-RPT).

Owns which addresses are report addresses (REPORT_ADDRESS, else POSTMASTER_ADDRESS, else
postmaster@ each hosted domain: the rua `dns records` publishes, selftest/records.py),
finding report attachments (application/zip, application/gzip, text/xml,
application/xml, application/tlsrpt+gzip, application/tlsrpt+json, and
application/octet-stream named *.xml*, *.json*, *.zip, *.gz), undoing their compression,
and handing the bytes to the parser of their kind.

Invariants: the mail itself is delivered normally, and before anything here happens —
delivery only calls `offer`, which looks at the recipient addresses and queues the
stored blob's id; the work runs in one background task, its parsing in a thread, so
ordinary deliveries pay one set lookup per recipient. Every report is hostile input:
caps on the message size looked at, the parts walked, the compressed and decompressed
bytes (decompression stops at the cap: zip bombs), zip members, and the queue of
waiting reports (full: the newest is skipped, logged). A bad report is logged and
skipped; nothing raises into delivery.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.parser
import email.policy
import io
import logging
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Protocol

from postroom.clock import Clock
from postroom.config import Config
from postroom.loops import cancel_and_wait
from postroom.store.blobs import BlobStore

log = logging.getLogger(__name__)

MAX_MESSAGE_SIZE = 10 * 1024 * 1024  # a larger mail at a report address is not looked at
MAX_PARTS = 20  # MIME parts walked
MAX_REPORTS_PER_MESSAGE = 5  # attachments parsed
MAX_COMPRESSED = 5 * 1024 * 1024  # one attachment, decoded
MAX_UNCOMPRESSED = 20 * 1024 * 1024  # one report after decompression
MAX_ZIP_MEMBERS = 4
MAX_WAITING = 100  # reports waiting for the background task

DMARC = "dmarc"
TLSRPT = "tlsrpt"

_REPORT_TYPES = {
    "application/zip": DMARC, "application/x-zip-compressed": DMARC,
    "application/gzip": DMARC, "application/x-gzip": DMARC,
    "text/xml": DMARC, "application/xml": DMARC,
    "application/tlsrpt+gzip": TLSRPT, "application/tlsrpt+json": TLSRPT,
}
_REPORT_SUFFIXES = (".xml", ".xml.gz", ".zip", ".gz", ".json", ".json.gz")


class BadReport(ValueError):
    """A report that cannot be read: logged and skipped."""


class ReportParser(Protocol):
    """What a report kind plugs in: a blocking `parse` (run in a thread) of the
    decompressed bytes, and `save` of what it returned (on the loop)."""

    kind: str

    def parse(self, data: bytes) -> Any:
        """Raises BadReport (or ValueError) for what it cannot read."""
        ...

    async def save(self, parsed: Any, now: dt.datetime) -> str:
        """Store it; a line for the log."""
        ...


@dataclass(frozen=True, slots=True)
class Attachment:
    kind: str
    filename: str
    data: bytes  # decompressed


def report_addresses(config: Config) -> frozenset[str]:
    """The configured report address (REPORT_ADDRESS, else POSTMASTER_ADDRESS); empty
    when neither is set: then postmaster@ any hosted domain is one (`is_report_address`)."""
    chosen = config.report_address or config.postmaster_address
    return frozenset({chosen.lower()}) if chosen else frozenset()


def rua_address(config: Config, domain: str) -> str:
    """The address a hosted domain's published rua names (`dns records`)."""
    return config.report_address or config.postmaster_address or f"postmaster@{domain}"


def is_report_address(addresses: frozenset[str], address: str) -> bool:
    """`address` (a local recipient) is a report address: one of `addresses`, or, when
    none is configured, a postmaster@ of ours (RFC 5321 §4.5.1: every domain has one)."""
    address = address.lower()
    if addresses:
        return address in addresses
    return address.partition("@")[0] == "postmaster"


def report_kind(content_type: str, filename: str) -> str | None:
    """DMARC or TLS-RPT for an attachment by its type and name; None: not a report."""
    filename = filename.lower()
    kind = _REPORT_TYPES.get(content_type.lower())
    if kind is None and content_type.lower() == "application/octet-stream" \
            and filename.endswith(_REPORT_SUFFIXES):
        kind = DMARC
    if kind is not None and filename.endswith((".json", ".json.gz")):
        kind = TLSRPT
    return kind


def decompress(data: bytes, filename: str = "") -> bytes:
    """The report inside `data`: gunzipped, unzipped (the first report member) or as it
    is; BadReport past the caps or for broken archives."""
    if len(data) > MAX_COMPRESSED:
        raise BadReport(f"compressed report over {MAX_COMPRESSED} bytes")
    if data[:2] == b"\x1f\x8b":
        return _gunzip(data)
    if data[:4] == b"PK\x03\x04":
        return _unzip(data)
    if len(data) > MAX_UNCOMPRESSED:
        raise BadReport(f"report over {MAX_UNCOMPRESSED} bytes")
    return data


def _gunzip(data: bytes) -> bytes:
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, MAX_UNCOMPRESSED + 1)
    except zlib.error as error:
        raise BadReport(f"broken gzip: {error}") from None
    if len(out) > MAX_UNCOMPRESSED or inflater.unconsumed_tail:
        raise BadReport(f"report decompresses to over {MAX_UNCOMPRESSED} bytes")
    if not inflater.eof:
        raise BadReport("truncated gzip")
    return out


def _unzip(data: bytes) -> bytes:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
            if len(members) > MAX_ZIP_MEMBERS:
                raise BadReport(f"zip with over {MAX_ZIP_MEMBERS} members")
            files = [m for m in members if not m.is_dir()]
            if not files:
                raise BadReport("empty zip")
            with archive.open(files[0]) as member:
                out = member.read(MAX_UNCOMPRESSED + 1)
    except (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError,
            EOFError) as error:
        raise BadReport(f"broken zip: {error}") from None
    if len(out) > MAX_UNCOMPRESSED:
        raise BadReport(f"report decompresses to over {MAX_UNCOMPRESSED} bytes")
    return out


def find_attachments(raw: bytes) -> list[Attachment]:
    """The reports a message carries, decompressed; broken ones logged and left out."""
    message = email.parser.BytesParser(policy=email.policy.default).parsebytes(raw)
    found: list[Attachment] = []
    for part in _leaf_parts(message):
        kind = report_kind(part.get_content_type(), part.get_filename() or "")
        if kind is None:
            continue
        try:
            payload = part.get_payload(decode=True)
            if not isinstance(payload, bytes):
                raise BadReport("no attachment body")
            found.append(Attachment(kind, part.get_filename() or "", decompress(payload)))
        except BadReport as error:
            log.warning("report attachment %r skipped: %s", part.get_filename(), error)
        if len(found) >= MAX_REPORTS_PER_MESSAGE:
            break
    return found


def _leaf_parts(message: EmailMessage) -> Iterator[EmailMessage]:
    for count, part in enumerate(message.walk()):
        if count >= MAX_PARTS:
            return
        if not part.is_multipart():
            yield part  # type: ignore[misc]  # walk() yields the policy's class


class ReportIntake:
    """The background reader of mail delivered to report addresses."""

    def __init__(self, config: Config, blobs: BlobStore, clock: Clock) -> None:
        self.addresses = report_addresses(config)
        self.blobs = blobs
        self.clock = clock
        self.parsers: dict[str, ReportParser] = {}
        self._waiting: asyncio.Queue[str] = asyncio.Queue(MAX_WAITING)
        self._task: asyncio.Task[None] | None = None
        self.handled = 0  # messages looked at (tests wait on it)

    def register(self, parser: ReportParser) -> None:
        self.parsers[parser.kind] = parser

    def offer(self, recipients: Sequence[str], blob_id: str, size: int) -> bool:
        """After local delivery: queue the stored message when one of `recipients` is a
        report address. Never raises, never waits."""
        if not self.parsers or size > MAX_MESSAGE_SIZE:
            return False
        if not any(is_report_address(self.addresses, r) for r in recipients):
            return False
        try:
            self._waiting.put_nowait(blob_id)
        except asyncio.QueueFull:
            log.warning("report intake busy: a report mail (%s) left unread", blob_id)
            return False
        return True

    def start(self) -> None:
        if self._task is None and self.parsers:
            self._task = asyncio.create_task(self._run(), name="report-intake")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _run(self) -> None:
        while True:
            blob_id = await self._waiting.get()
            try:
                await self.read_message(await self.blobs.read(blob_id))
            except Exception as error:  # a broken mail must not stop the intake
                log.warning("report mail %s not read: %s", blob_id, error)
            self.handled += 1

    async def read_message(self, raw: bytes) -> list[str]:
        """Parse and store every report in `raw`; a log line per report."""
        lines = []
        for attachment in await asyncio.to_thread(find_attachments, raw):
            parser = self.parsers.get(attachment.kind)
            if parser is None:
                continue
            try:
                parsed = await asyncio.to_thread(parser.parse, attachment.data)
                lines.append(await parser.save(parsed, self.clock.now()))
            except ValueError as error:  # BadReport and the parsers' own
                log.warning("%s report %r skipped: %s", attachment.kind, attachment.filename,
                            error)
                continue
            log.info("%s report %r: %s", attachment.kind, attachment.filename, lines[-1])
        return lines
