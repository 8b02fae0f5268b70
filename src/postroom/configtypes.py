"""The value types of the env file, shared by config.py and its parts (configfilter.py,
configsieve.py): lists, flags and durations as mailserver.env writes them.

Owns parsing those spellings; pydantic validates the rest. Invariant: a value that is
not a string (a default, or a value already parsed) passes through unchanged.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, Field


def _split_list(value: Any) -> Any:
    """Comma- or space-separated lists, as mailserver.env writes them."""
    if isinstance(value, str):
        return [item for item in re.split(r"[,\s]+", value.strip()) if item]
    return value


def _parse_bool(value: Any) -> Any:
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off", ""}:
            return False
        raise ValueError("expected 0 or 1")
    return value


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _parse_duration(value: Any) -> Any:
    """Postfix time syntax: `5d`, `90m`, `3600` (seconds)."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+)\s*([smhdw]?)\s*", value)
        if not match:
            raise ValueError("expected a duration such as 5d, 12h, 30m or 3600")
        return int(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"]
    return value


StrList = Annotated[list[str], BeforeValidator(_split_list)]
Flag = Annotated[bool, BeforeValidator(_parse_bool)]
Duration = Annotated[int, BeforeValidator(_parse_duration), Field(ge=0)]
