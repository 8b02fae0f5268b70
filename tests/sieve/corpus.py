"""The Sieve corpus: scripts × messages with the action list each must give (issue 19).

Each `Case` names a message from MESSAGES and the expected actions in the normalised
form `normalise()` produces from our result and tests/sieve/pigeonhole.py from Debian's
`sieve-test` output: "keep", "fileinto:NAME", "redirect:ADDRESS", "discard", "reject",
"vacation", each store action followed by "[flags]" (lower-cased, sorted) when it has
flags, and "error" when the script failed at run time (the message is then kept).
`compare` is False where Pigeonhole differs by design or configuration (environment
values, duplicate tracking state, ereject, special-use mailboxes that only exist here).
"""

from __future__ import annotations

from dataclasses import dataclass

from postroom.sieve.actions import (
    Discard,
    FileInto,
    Keep,
    Redirect,
    Reject,
    SieveResult,
    Vacation,
)

PLAIN = (
    b"Return-Path: <joe@example.org>\r\n"
    b"From: Joe Sender <joe+lists@example.org>\r\n"
    b"To: Me <me@example.com>, other@example.net\r\n"
    b"Cc: cc@example.com\r\n"
    b"Subject: [acme-users] [fwd] version 1.0 is out\r\n"
    b"Date: Mon, 07 Dec 2026 10:30:00 +0100\r\n"
    b"Message-ID: <plain-1@example.org>\r\n"
    b"X-Spam-Score: 7\r\n"
    b"Received: from a by b; Mon, 07 Dec 2026 10:30:00 +0100\r\n"
    b"Received: from c by d; Mon, 07 Dec 2026 10:29:00 +0100\r\n"
    b"\r\n"
    b"Hello,\r\nthe invoice for December is attached.\r\nRegards\r\n"
)
LIST = (
    b"From: announce@lists.example.org\r\n"
    b"To: acme-users@lists.example.org\r\n"
    b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= from the list\r\n"
    b"List-Id: ACME users <acme-users.lists.example.org>\r\n"
    b"Precedence: list\r\n"
    b"Date: Sun, 06 Dec 2026 23:00:00 -0500\r\n"
    b"Message-ID: <list-1@lists.example.org>\r\n"
    b"\r\n"
    b"Weekly digest.\r\n"
)
MULTIPART = (
    b"From: billing@shop.example\r\n"
    b"To: me@example.com\r\n"
    b"Subject: Your order\r\n"
    b"Date: Mon, 07 Dec 2026 08:00:00 +0000\r\n"
    b"Message-ID: <order-7@shop.example>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=\"b1\"\r\n"
    b"\r\n"
    b"--b1\r\n"
    b"Content-Type: multipart/alternative; boundary=\"b2\"\r\n\r\n"
    b"--b2\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"Thank you for your order of a caf=C3=A9 machine.\r\n"
    b"--b2\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    b"<html><body><p>Thank you for your <b>order</b></p></body></html>\r\n"
    b"--b2--\r\n"
    b"--b1\r\nContent-Type: application/pdf; name=\"receipt.pdf\"\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\n"
    b"JVBERi0xLjQKU0VDUkVUV09SRA==\r\n"
    b"--b1--\r\n"
)
AUTOREPLY = (
    b"From: robot@example.net\r\n"
    b"To: me@example.com\r\n"
    b"Subject: Out of office\r\n"
    b"Auto-Submitted: auto-replied\r\n"
    b"Message-ID: <auto-1@example.net>\r\n"
    b"\r\n"
    b"I am away.\r\n"
)
MESSAGES = {"plain": PLAIN, "list": LIST, "multipart": MULTIPART, "autoreply": AUTOREPLY}
ENVELOPE_FROM = "joe@example.org"
ENVELOPE_TO = "me+work@example.com"


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    script: str
    message: str
    expected: tuple[str, ...]
    compare: bool = True


def _store(name: str, flags: tuple[str, ...]) -> str:
    base = "keep" if name.upper() == "INBOX" else f"fileinto:{name}"
    return base + (f"[{' '.join(sorted(f.lower() for f in flags))}]" if flags else "")


def normalise(result: SieveResult) -> tuple[str, ...]:
    """Our result in the corpus's form; a runtime error is "error" then "keep"."""
    if result.error:
        return ("error", "keep")
    out: list[str] = []
    for action in result.actions:
        if isinstance(action, Keep):
            out.append(_store("INBOX", action.flags))
        elif isinstance(action, FileInto):
            out.append(_store(action.mailbox, action.flags))
        elif isinstance(action, Redirect):
            out.append(f"redirect:{action.address}")
        elif isinstance(action, Discard):
            out.append("discard")
        elif isinstance(action, Reject):
            out.append("reject")
        elif isinstance(action, Vacation):
            out.append("vacation")
    if result.implicit_keep:
        out.append(_store("INBOX", result.implicit_keep_flags))
    return tuple(out)


R = 'require ["fileinto", "variables", "imap4flags"];\n'
CASES: tuple[Case, ...] = (
    # -- RFC 5228 core ----------------------------------------------------------------
    Case("empty script keeps", "", "plain", ("keep",)),
    Case("explicit keep", "keep;", "plain", ("keep",)),
    Case("discard", "discard;", "plain", ("discard",)),
    Case("stop before discard", "stop; discard;", "plain", ("keep",)),
    Case("header is", 'if header :is "subject" "[acme-users] [fwd] version 1.0 is out" '
         '{ discard; }', "plain", ("discard",)),
    Case("header is case-insensitive", 'if header :is "SUBJECT" "[ACME-USERS] [FWD] '
         'VERSION 1.0 IS OUT" { discard; }', "plain", ("discard",)),
    Case("header i;octet is exact", 'if header :is :comparator "i;octet" "subject" '
         '"[ACME-users] [fwd] version 1.0 is out" { discard; }', "plain", ("keep",)),
    Case("header contains", 'if header :contains "subject" "version" { discard; }',
         "plain", ("discard",)),
    Case("header contains list of names", 'if header :contains ["x-nope", "to"] '
         '"other@" { discard; }', "plain", ("discard",)),
    Case("header matches glob", 'if header :matches "subject" "*1.?*" { discard; }',
         "plain", ("discard",)),
    Case("header matches escaped star", 'if header :matches "subject" "*\\\\**" '
         '{ discard; }', "plain", ("keep",)),
    Case("header decoded RFC 2047", 'if header :contains "subject" "Grüße" { discard; }',
         "list", ("discard",)),
    Case("address all", 'if address :is "from" "joe+lists@example.org" { discard; }',
         "plain", ("discard",)),
    Case("address domain", 'if address :domain :is "to" "example.net" { discard; }',
         "plain", ("discard",)),
    Case("address localpart", 'if address :localpart :is "cc" "cc" { discard; }',
         "plain", ("discard",)),
    Case("address ignores display name", 'if address :contains "from" "Sender" '
         '{ discard; }', "plain", ("keep",)),
    Case("exists all", 'if exists ["from", "date"] { discard; }', "plain", ("discard",)),
    Case("exists one missing", 'if exists ["from", "x-missing"] { discard; }', "plain",
         ("keep",)),
    Case("size over", "if size :over 100 { discard; }", "plain", ("discard",)),
    Case("size under K", "if size :under 1K { discard; }", "plain", ("discard",)),
    Case("not", 'if not exists "list-id" { discard; }', "plain", ("discard",)),
    Case("allof", 'if allof (exists "list-id", header :contains "precedence" "list") '
         '{ discard; }', "list", ("discard",)),
    Case("anyof", 'if anyof (false, header :contains "subject" "digest") { discard; } '
         'elsif true { keep; }', "list", ("keep",)),
    Case("elsif chain", 'require "fileinto"; if false { discard; } elsif header :contains '
         '"subject" "order" { fileinto "Orders"; } else { keep; }', "multipart",
         ("fileinto:Orders",)),
    Case("redirect cancels keep", 'redirect "archive@example.net";', "plain",
         ("redirect:archive@example.net",)),
    Case("duplicate redirects merge", 'redirect "a@example.net"; redirect '
         '"a@example.net";', "plain", ("redirect:a@example.net",)),
    Case("too many redirects", "".join(f'redirect "r{i}@example.net";' for i in range(6)),
         "plain", ("error", "keep")),
    Case("fileinto", 'require "fileinto"; fileinto "Work";', "plain", ("fileinto:Work",)),
    Case("fileinto twice merges", 'require "fileinto"; fileinto "A"; fileinto "A";',
         "plain", ("fileinto:A",)),
    Case("fileinto INBOX is keep", 'require "fileinto"; fileinto "INBOX";', "plain",
         ("keep",)),
    # -- reject (RFC 5429) ------------------------------------------------------------
    Case("reject", 'require "reject"; reject "not wanted";', "plain", ("reject",)),
    Case("reject conflicts with keep", 'require "reject"; reject "no"; keep;', "plain",
         ("error", "keep")),
    Case("ereject", 'require "ereject"; ereject "no";', "plain", ("reject",),
         compare=False),
    # -- envelope, subaddress ---------------------------------------------------------
    Case("envelope from", 'require "envelope"; if envelope :is "from" '
         '"joe@example.org" { discard; }', "plain", ("discard",)),
    Case("envelope to detail", 'require ["envelope", "subaddress", "fileinto"]; '
         'if envelope :detail "to" "work" { fileinto "Work"; }', "plain",
         ("fileinto:Work",)),
    Case("address user", 'require "subaddress"; if address :user "from" "joe" '
         '{ discard; }', "plain", ("discard",)),
    Case("address detail", 'require "subaddress"; if address :detail "from" "lists" '
         '{ discard; }', "plain", ("discard",)),
    Case("detail absent never matches", 'require "subaddress"; if address :detail "to" '
         '"" { discard; }', "plain", ("keep",)),
    # -- variables (RFC 5229) ---------------------------------------------------------
    Case("match variables", R + 'if header :matches "subject" "[*] *" '
         '{ fileinto "lists.${1}"; }', "plain", ("fileinto:lists.acme-users",)),
    Case("match variable zero", R + 'if header :matches "from" "*@*" '
         '{ fileinto "${2}"; }', "list", ("fileinto:lists.example.org",)),
    Case("set and use", R + 'set "folder" "Projects"; fileinto "${folder}";', "plain",
         ("fileinto:Projects",)),
    Case("set modifiers", R + 'set :upperfirst :lower "n" "hELLO"; fileinto "${n}";',
         "plain", ("fileinto:Hello",)),
    Case("set length", R + 'set :length "n" "abcd"; fileinto "n${n}";', "plain",
         ("fileinto:n4",)),
    Case("unknown variable is empty", R + 'fileinto "a${nothing}b";', "plain",
         ("fileinto:ab",)),
    Case("string test", R + 'set "x" "abc"; if string :is "${x}" "abc" { discard; }',
         "plain", ("discard",)),
    Case("quotewildcard", R + 'set :quotewildcard "p" "a*b"; if string :matches "axb" '
         '"${p}" { discard; }', "plain", ("keep",)),
    # -- imap4flags (RFC 5232) --------------------------------------------------------
    Case("addflag on implicit keep", R + 'addflag "\\\\Flagged";', "plain",
         ("keep[\\flagged]",)),
    Case("fileinto with flags", R + 'fileinto :flags ["\\\\Seen", "$Work"] "W";', "plain",
         ("fileinto:W[$work \\seen]",)),
    Case("setflag then removeflag", R + 'setflag ["a", "b"]; removeflag "a"; keep;',
         "plain", ("keep[b]",)),
    Case("hasflag", R + 'addflag "Junk"; if hasflag :is "junk" { discard; }', "plain",
         ("discard",)),
    # -- body (RFC 5173) --------------------------------------------------------------
    Case("body text", 'require "body"; if body :contains "invoice" { discard; }',
         "plain", ("discard",)),
    Case("body decodes quoted-printable", 'require "body"; if body :contains "café" '
         '{ discard; }', "multipart", ("discard",)),
    Case("body raw sees encoding", 'require "body"; if body :raw :contains "caf=C3=A9" '
         '{ discard; }', "multipart", ("discard",)),
    Case("body content type", 'require "body"; if body :content "text/html" :contains '
         '"order" { discard; }', "multipart", ("discard",)),
    Case("body misses attachments", 'require "body"; if body :text :contains "SECRET" '
         '{ discard; }', "multipart", ("keep",)),
    # -- relational, numeric comparator (RFC 5231, 4790) -------------------------------
    Case("value gt numeric", 'require ["relational", "comparator-i;ascii-numeric"]; '
         'if header :value "ge" :comparator "i;ascii-numeric" "x-spam-score" "5" '
         '{ discard; }', "plain", ("discard",)),
    Case("count received", 'require ["relational", "comparator-i;ascii-numeric"]; '
         'if header :count "eq" :comparator "i;ascii-numeric" "received" "2" '
         '{ discard; }', "plain", ("discard",)),
    Case("count addresses", 'require ["relational", "comparator-i;ascii-numeric"]; '
         'if address :count "ge" :comparator "i;ascii-numeric" ["to", "cc"] "3" '
         '{ discard; }', "plain", ("discard",)),
    # -- copy (RFC 3894) --------------------------------------------------------------
    Case("fileinto copy keeps", 'require ["fileinto", "copy"]; fileinto :copy "Archive";',
         "plain", ("fileinto:Archive", "keep")),
    Case("redirect copy keeps", 'require "copy"; redirect :copy "b@example.net";',
         "plain", ("redirect:b@example.net", "keep")),
    # -- date and index (RFC 5260) ----------------------------------------------------
    Case("date year", 'require "date"; if date :is "date" "year" "2026" { discard; }',
         "plain", ("discard",)),
    Case("date zone", 'require "date"; if date :is :zone "+0000" "date" "hour" "09" '
         '{ discard; }', "plain", ("discard",)),
    Case("date originalzone", 'require "date"; if date :is :originalzone "date" "zone" '
         '"-0500" { discard; }', "list", ("discard",)),
    Case("index last", 'require "index"; if header :index 1 :last :contains "received" '
         '"from c" { discard; }', "plain", ("discard",)),
    Case("index first", 'require "index"; if header :index 1 :contains "received" '
         '"from c" { discard; }', "plain", ("keep",)),
    # -- mailbox (RFC 5490), special-use (RFC 8579) ----------------------------------
    Case("fileinto create", 'require ["fileinto", "mailbox"]; fileinto :create "New";',
         "plain", ("fileinto:New",)),
    Case("specialuse falls back", 'require ["fileinto", "special-use"]; '
         'fileinto :specialuse "\\\\Archive" "Old";', "plain", ("fileinto:Old",),
         compare=False),
    # -- editheader (RFC 5293) --------------------------------------------------------
    Case("addheader keeps", 'require "editheader"; addheader "X-Filtered" "yes";',
         "plain", ("keep",)),
    Case("deleteheader then test", 'require "editheader"; deleteheader "x-spam-score"; '
         'if exists "x-spam-score" { discard; }', "plain", ("keep",)),
    Case("added header is seen", 'require "editheader"; addheader "X-Tag" "t1"; '
         'if header :is "x-tag" "t1" { discard; }', "plain", ("discard",)),
    Case("received is protected", 'require "editheader"; deleteheader "received"; '
         'if exists "received" { discard; }', "plain", ("discard",)),
    # -- regex (draft-ietf-sieve-regex) -----------------------------------------------
    Case("regex groups", R + 'require "regex"; if header :regex "list-id" '
         '"<([a-z-]+)\\\\." { fileinto "l.${1}"; }', "list", ("fileinto:l.acme-users",)),
    Case("regex no match", 'require "regex"; if header :regex "subject" "^x+$" '
         '{ discard; }', "plain", ("keep",)),
    # -- vacation (RFC 5230, 6131) ----------------------------------------------------
    Case("vacation", 'require "vacation"; vacation :days 1 "I am away";', "plain",
         ("vacation", "keep")),
    Case("vacation seconds", 'require "vacation-seconds"; vacation :seconds 3600 "away";',
         "plain", ("vacation", "keep")),
    Case("vacation and fileinto", 'require ["vacation", "fileinto"]; '
         'vacation "away"; fileinto "Later";', "plain", ("vacation", "fileinto:Later")),
    # -- encoded-character (RFC 5228 §2.4.2.4) ---------------------------------------
    Case("encoded character", 'require ["encoded-character", "fileinto"]; '
         'fileinto "${hex:46 6f 6f}";', "plain", ("fileinto:Foo",)),
    Case("multi-line string", 'require "vacation";\nvacation text:\nAway until\n..Monday\n'
         '.\n;\n', "plain", ("vacation", "keep")),
    # -- include (RFC 6609) ----------------------------------------------------------
    Case("include optional missing", 'require "include"; include :optional "nope"; keep;',
         "plain", ("keep",), compare=False),
    # -- environment (RFC 5183), duplicate (RFC 7352) ---------------------------------
    Case("environment name", 'require "environment"; if environment :is "name" '
         '"postroom" { discard; }', "plain", ("discard",), compare=False),
    Case("duplicate first time", 'require "duplicate"; if duplicate { discard; }',
         "plain", ("keep",), compare=False),
)
