"""Logging: one line per event on stderr, level from LOG_LEVEL (docker-mailserver's key)."""

from __future__ import annotations

import logging
import sys

_LEVELS = {"trace": logging.DEBUG, "debug": logging.DEBUG, "info": logging.INFO,
           "warn": logging.WARNING, "warning": logging.WARNING, "error": logging.ERROR}


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS.get(level, logging.INFO))
    # aiosqlite logs every statement at DEBUG; that is noise even when debugging postroom.
    logging.getLogger("aiosqlite").setLevel(logging.WARNING)
