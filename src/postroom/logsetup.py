"""Logging: one line per event on stderr, level from LOG_LEVEL (docker-mailserver's key).

Owns the one line format every message uses, lifecycle lines included:
`2026-01-01 20:00:00,123+0800 INFO postroom: imap listening on 0.0.0.0:143`. The time is
in TZ's zone with its UTC offset, so a line is unambiguous whatever the zone. Lifecycle
lines (`announce`: listening, ready) are printed at every LOG_LEVEL — they are how a
user, a supervisor or a test learns that `serve` is up — but in the same format.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys

from postroom.clock import display_zone

_LEVELS = {"trace": logging.DEBUG, "debug": logging.DEBUG, "info": logging.INFO,
           "warn": logging.WARNING, "warning": logging.WARNING, "error": logging.ERROR}
ANNOUNCER = "postroom"


class ZonedFormatter(logging.Formatter):
    """`%(asctime)s` in a given zone, with milliseconds and the UTC offset."""

    def __init__(self, fmt: str, zone: dt.tzinfo) -> None:
        super().__init__(fmt)
        self.zone = zone

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        when = dt.datetime.fromtimestamp(record.created, self.zone)
        return (when.strftime(datefmt) if datefmt else
                f"{when:%Y-%m-%d %H:%M:%S},{int(record.msecs):03d}{when:%z}")


def setup_logging(level: str, process_tag: str = "", timezone: str = "UTC") -> None:
    """`process_tag` marks the lines of an SMTP worker process (workers.py); `timezone`
    is TZ (config.timezone)."""
    handler = logging.StreamHandler(sys.stderr)
    tag = f"[{process_tag}]" if process_tag else ""
    handler.setFormatter(ZonedFormatter(
        f"%(asctime)s %(levelname)s %(name)s{tag}: %(message)s", display_zone(timezone)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS.get(level, logging.INFO))
    # aiosqlite logs every statement at DEBUG; that is noise even when debugging postroom.
    logging.getLogger("aiosqlite").setLevel(logging.WARNING)


def announce(message: str, *args: object) -> None:
    """Log a lifecycle line at INFO whatever LOG_LEVEL says: handed to the handlers
    directly, past the level check, so it is formatted like every other line."""
    logger = logging.getLogger(ANNOUNCER)
    record = logger.makeRecord(ANNOUNCER, logging.INFO, __file__, 0, message, args, None)
    handlers = logging.getLogger().handlers
    if not handlers:  # logging not set up (a library caller): the usual path
        logger.info(message, *args)
        return
    for handler in handlers:
        handler.handle(record)
