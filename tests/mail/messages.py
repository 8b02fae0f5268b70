"""Sample messages shared by the mail/ tests (CRLF line endings unless named bare_lf)."""

from __future__ import annotations


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8")


SIMPLE = crlf(
    "From: Alice Example <alice@example.com>\n"
    "To: bob@example.net\n"
    "Subject: Hello\n"
    "Date: Mon, 7 Feb 1994 21:52:25 -0800\n"
    "Message-ID: <1@example.com>\n"
    "\n"
    "Hi Bob,\n"
    "how are you?\n"
)

ALTERNATIVE = crlf(
    "From: alice@example.com\n"
    "Subject: alt\n"
    "MIME-Version: 1.0\n"
    'Content-Type: multipart/alternative; boundary="b1"\n'
    "\n"
    "This is the preamble.\n"
    "--b1\n"
    "Content-Type: text/plain; charset=utf-8\n"
    "Content-Transfer-Encoding: quoted-printable\n"
    "\n"
    "caf=C3=A9 au lait=\n"
    " please\n"
    "--b1\n"
    "Content-Type: text/html; charset=utf-8\n"
    "\n"
    "<p>caf\u00e9</p>\n"
    "--b1--\n"
    "This is the epilogue.\n"
)

MIXED_ATTACHMENT = crlf(
    "From: alice@example.com\n"
    "Subject: report\n"
    "MIME-Version: 1.0\n"
    "Content-Type: multipart/mixed; boundary=outer\n"
    "\n"
    "--outer\n"
    "Content-Type: text/plain\n"
    "\n"
    "See attached.\n"
    "--outer\n"
    "Content-Type: application/octet-stream; name=data.bin\n"
    "Content-Transfer-Encoding: base64\n"
    "Content-Disposition: attachment; filename=data.bin\n"
    "Content-ID: <att1@example.com>\n"
    "Content-Description: some bytes\n"
    "\n"
    "AAECAwQFBgcICQ==\n"
    "--outer--\n"
)

NESTED = crlf(
    "From: alice@example.com\n"
    "Content-Type: multipart/mixed; boundary=outer\n"
    "\n"
    "--outer\n"
    "Content-Type: multipart/alternative; boundary=inner\n"
    "\n"
    "--inner\n"
    "Content-Type: text/plain\n"
    "\n"
    "plain\n"
    "--inner\n"
    "Content-Type: text/html\n"
    "\n"
    "<b>html</b>\n"
    "--inner--\n"
    "--outer\n"
    "Content-Type: image/png\n"
    "Content-Transfer-Encoding: base64\n"
    "\n"
    "iVBORw0KGgo=\n"
    "--outer--\n"
)

EMBEDDED = crlf(
    "From: alice@example.com\n"
    "Subject: Fwd: inner\n"
    "Content-Type: multipart/mixed; boundary=outer\n"
    "\n"
    "--outer\n"
    "Content-Type: text/plain\n"
    "\n"
    "Forwarded below.\n"
    "--outer\n"
    "Content-Type: message/rfc822\n"
    "Content-Description: forwarded\n"
    "\n"
    "From: Carol <carol@example.org>\n"
    "Subject: inner\n"
    "Content-Type: multipart/alternative; boundary=in\n"
    "\n"
    "--in\n"
    "Content-Type: text/plain\n"
    "\n"
    "inner plain\n"
    "--in\n"
    "Content-Type: text/html\n"
    "\n"
    "<i>inner</i>\n"
    "--in--\n"
    "--outer--\n"
)

NON_ASCII = (
    crlf(
        "From: =?UTF-8?Q?J=C3=B6rg_M=C3=BCller?= <joerg@example.de>\n"
        "To: =?ISO-8859-1?Q?Andr=E9?= <andre@example.fr>\n"
        "Subject: =?utf-8?B?w5xiZXJncsO2w59l?=\n"
        " =?iso-8859-1?q?_und_Gr=FC=DFe?=\n"
        "Content-Type: multipart/mixed; boundary=x\n"
        "\n"
        "--x\n"
        "Content-Type: text/plain; charset=iso-8859-1\n"
        "Content-Transfer-Encoding: 8bit\n"
        "\n"
    )
    + "Gr\u00fc\u00dfe\r\n".encode("latin-1")
    + crlf(
        "--x\n"
        "Content-Type: application/pdf;\n"
        " name*0*=utf-8''Rechnung%20;\n"
        " name*1*=M%C3%A4rz.pdf\n"
        "Content-Disposition: attachment; filename*=utf-8''Rechnung%20M%C3%A4rz.pdf\n"
        "Content-Transfer-Encoding: base64\n"
        "\n"
        "JVBERi0=\n"
        "--x--\n"
    )
)
