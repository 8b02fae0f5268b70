"""Date parts for the date and currentdate tests (RFC 5260 §4), as pure functions."""

from __future__ import annotations

import datetime as dt
import email.utils
import re

_ZONE = re.compile(r"([+-])(\d\d)(\d\d)")


def parse_zone(text: str) -> dt.tzinfo | None:
    """RFC 5260 §4.1.1 :zone "+0100"; None when malformed (the test then fails)."""
    found = _ZONE.fullmatch(text.strip())
    if not found:
        return None
    sign = -1 if found.group(1) == "-" else 1
    hours, minutes = int(found.group(2)), int(found.group(3))
    if hours > 23 or minutes > 59:
        return None
    return dt.timezone(sign * dt.timedelta(hours=hours, minutes=minutes))


def parse_header_date(value: str) -> dt.datetime | None:
    """An RFC 5322 date-time, or None (RFC 5260 §5: an unparsable date never matches)."""
    try:
        parsed = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed is None:
        return None
    if parsed.tzinfo is None:  # "-0000": unknown zone, taken as UTC (RFC 5322 §3.3)
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed


def _zone_text(moment: dt.datetime) -> str:
    offset = moment.utcoffset() or dt.timedelta()
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    return f"{sign}{minutes // 60:02d}{minutes % 60:02d}"


def date_part(moment: dt.datetime, part: str) -> str:
    """RFC 5260 §4.2: the named part of `moment` (already in the wanted zone)."""
    part = part.lower()
    if part == "year":
        return f"{moment.year:04d}"
    if part == "month":
        return f"{moment.month:02d}"
    if part == "day":
        return f"{moment.day:02d}"
    if part == "date":
        return moment.strftime("%Y-%m-%d")
    if part == "julian":  # Modified Julian Day: days since 1858-11-17
        return str((moment.date() - dt.date(1858, 11, 17)).days)
    if part == "hour":
        return f"{moment.hour:02d}"
    if part == "minute":
        return f"{moment.minute:02d}"
    if part == "second":
        return f"{moment.second:02d}"
    if part == "time":
        return moment.strftime("%H:%M:%S")
    if part == "iso8601":
        zone = _zone_text(moment)
        return moment.strftime("%Y-%m-%dT%H:%M:%S") + f"{zone[:3]}:{zone[3:]}"
    if part == "std11":
        return email.utils.format_datetime(moment)
    if part == "zone":
        return _zone_text(moment)
    if part == "weekday":
        return str((moment.weekday() + 1) % 7)  # 0 = Sunday
    raise ValueError(f"unknown date part {part!r}")
