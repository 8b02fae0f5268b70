"""Logging: one line per event on stderr, level from LOG_LEVEL (docker-mailserver's key)."""

from __future__ import annotations

import logging
import sys

_LEVELS = {"trace": logging.DEBUG, "debug": logging.DEBUG, "info": logging.INFO,
           "warn": logging.WARNING, "warning": logging.WARNING, "error": logging.ERROR}


def setup_logging(level: str, process_tag: str = "") -> None:
    """`process_tag` marks the lines of an SMTP worker process (workers.py)."""
    handler = logging.StreamHandler(sys.stderr)
    tag = f"[{process_tag}]" if process_tag else ""
    handler.setFormatter(logging.Formatter(
        f"%(asctime)s %(levelname)s %(name)s{tag}: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS.get(level, logging.INFO))
    # aiosqlite logs every statement at DEBUG; that is noise even when debugging postroom.
    logging.getLogger("aiosqlite").setLevel(logging.WARNING)
