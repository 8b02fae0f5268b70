"""The mixed-load section's corpus: realistic messages generated deterministically.

Owns making a corpus of messages of the kinds a real mailbox holds — plain text,
quoted-printable, HTML with a text alternative, attachments (up to 150 KB), forwards
(a message/rfc822 part) — from one seed, with the stdlib `email` package building the
MIME (RFC 2045–2049). Each message carries what the load generator checks answers
against: its bytes, its Subject and its top-level MIME type.

Invariants: the same seed gives byte-identical messages (boundaries, Message-IDs and
dates come from the seeded generator, never from the clock or os.urandom); attachments
never exceed MAX_ATTACHMENT bytes before encoding; every line ends in CRLF.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP

MAX_ATTACHMENT = 150 * 1024
KINDS = ("plain", "quoted-printable", "html", "attachment", "forward")
KIND_WEIGHTS = (35, 15, 25, 15, 10)
WORDS = (
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
    "juliet", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo",
    "sierra", "tango", "uniform", "victor", "whiskey", "xray", "yankee", "zulu", "report",
    "invoice", "meeting", "budget", "schedule", "travel", "review", "draft", "café",
    "Grüße", "naïve", "résumé", "déjà", "Straße",
)
ASCII_WORDS = tuple(word for word in WORDS if word.isascii())  # Subjects stay unencoded
PEOPLE = ("Alice Martin", "Bob Dupont", "Carol Schmidt", "Dave Okafor", "Erin Kowalski",
          "Frank Nakamura", "Grace Silva", "Heidi Jensen")
ATTACHMENTS = (("report.pdf", "application", "pdf"), ("photo.jpg", "image", "jpeg"),
               ("data.csv", "text", "csv"), ("slides.zip", "application", "zip"))


@dataclass(frozen=True, slots=True)
class CorpusMessage:
    data: bytes
    subject: str
    kind: str
    mime_type: str  # top-level, lower case: "text/plain", "multipart/mixed", …


def _address(name: str) -> str:
    return f"{name} <{name.split()[0].lower()}@example.org>"


def _paragraphs(rng: random.Random, count: int) -> str:
    lines = []
    for _ in range(count):
        words = [rng.choice(WORDS) for _ in range(rng.randint(20, 60))]
        lines.append(" ".join(words).capitalize() + ".")
    return "\n\n".join(lines) + "\n"


def _headers(message: EmailMessage, rng: random.Random, index: int, subject: str) -> None:
    sender, recipient = rng.sample(PEOPLE, 2)
    message["From"] = _address(sender)
    message["To"] = _address(recipient)
    message["Subject"] = subject
    message["Date"] = (f"Mon, {1 + index % 28} Nov 2026 "
                       f"{index % 24:02d}:{index % 60:02d}:00 +0000")
    message["Message-ID"] = f"<{index}.{rng.getrandbits(48):012x}@example.org>"


def _fix_boundaries(message: EmailMessage, rng: random.Random) -> None:
    """The email package picks random boundaries when it writes; seed them instead."""
    for part in message.walk():
        if part.is_multipart():
            part.set_boundary(f"=_mix_{rng.getrandbits(64):016x}")


def _body(kind: str, rng: random.Random, index: int) -> EmailMessage:
    message = EmailMessage(policy=SMTP)
    text = _paragraphs(rng, rng.randint(1, 6))
    if kind == "plain":
        message.set_content(text.encode("ascii", "replace").decode(), cte="7bit")
    elif kind == "quoted-printable":
        message.set_content(text, cte="quoted-printable")
    elif kind == "html":
        message.set_content(text, cte="quoted-printable")
        html = "".join(f"<p>{p}</p>\n" for p in text.split("\n\n"))
        message.add_alternative(f"<html><body>\n{html}</body></html>\n", subtype="html",
                                cte="quoted-printable")
    elif kind == "attachment":
        message.set_content(text, cte="quoted-printable")
        name, maintype, subtype = rng.choice(ATTACHMENTS)
        size = rng.choice((2_000, 12_000, 40_000, 90_000, MAX_ATTACHMENT))
        payload = rng.randbytes(size)
        message.add_attachment(payload, maintype=maintype, subtype=subtype, filename=name)
    else:  # forward: the original travels as message/rfc822 (RFC 2046 §5.2.1)
        original = _body("plain", rng, index + 1_000_000)
        _headers(original, rng, index + 1_000_000, "Original: " + rng.choice(WORDS))
        message.set_content("Forwarding this, see below.\n\n" + text, cte="quoted-printable")
        message.add_attachment(original)
    return message


def make_corpus(count: int, seed: int) -> list[CorpusMessage]:
    """`count` messages, the same ones for the same seed."""
    rng = random.Random(seed)
    corpus = []
    for index in range(count):
        kind = rng.choices(KINDS, KIND_WEIGHTS)[0]
        message = _body(kind, rng, index)
        subject = f"{rng.choice(ASCII_WORDS)} {rng.choice(ASCII_WORDS)} m{seed}-{index}"
        if kind == "forward":
            subject = "Fwd: " + subject
        _headers(message, rng, index, subject)
        _fix_boundaries(message, rng)
        data = message.as_bytes(policy=SMTP)
        corpus.append(CorpusMessage(data, subject, kind, message.get_content_type()))
    return corpus
