"""SRS0 rewriting of forwarded mail's sender, and its reversal for bounces."""

from __future__ import annotations

from postroom.mail.srs import forward, reverse

SECRET = b"test secret"
NOW = 1_796_600_000.0
DAY = 86400


def test_forward_and_reverse() -> None:
    rewritten = forward("joe@example.org", "example.com", SECRET, NOW)
    assert rewritten.startswith("SRS0=") and rewritten.endswith("=example.org=joe@example.com")
    assert reverse(rewritten, SECRET, NOW) == "joe@example.org"
    assert reverse(rewritten.upper(), SECRET, NOW) == "JOE@EXAMPLE.ORG"  # re-cased on the way


def test_forged_or_old_addresses_do_not_reverse() -> None:
    rewritten = forward("joe@example.org", "example.com", SECRET, NOW)
    local, _, domain = rewritten.partition("@")
    forged = local.replace("=joe", "=eve") + "@" + domain
    assert reverse(forged, SECRET, NOW) is None
    assert reverse(rewritten, b"other secret", NOW) is None
    assert reverse(rewritten, SECRET, NOW + 30 * DAY) is None
    assert reverse(rewritten, SECRET, NOW + 20 * DAY) == "joe@example.org"
    assert reverse("joe@example.com", SECRET, NOW) is None
    assert reverse("SRS0=broken@example.com", SECRET, NOW) is None


def test_null_sender_and_our_own_srs_addresses_stay() -> None:
    assert forward("", "example.com", SECRET, NOW) == ""
    once = forward("joe@example.org", "example.com", SECRET, NOW)
    assert forward(once, "example.com", SECRET, NOW) == once
