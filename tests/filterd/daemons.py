"""Debian's rspamd, clamd and redis-server, started by the tests with configs they write.

Each daemon runs in the foreground in its own process group (stopped by that group's id,
never by name), its output read by a thread; readiness is a line of that output the
daemon prints once it listens (an Event with a timeout, no polling sleeps). Nothing
reaches the network: ports are on 127.0.0.1, rspamd's resolver points at a closed port,
clamd's signature database is the one file the test writes.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import pytest

RSPAMD = shutil.which("rspamd") or "/usr/bin/rspamd"
CLAMD = shutil.which("clamd") or "/usr/sbin/clamd"
REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
MARKER = b"POSTROOM-TEST-VIRUS-MARKER-5c1e9"
GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
RSPAMD_PASSWORD = "test-controller-secret"


def require(binary: str) -> None:
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        pytest.skip(f"{binary} is not installed")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Daemon:
    """One foreground daemon; `start` returns once `ready` matched a line of its output."""

    def __init__(self, argv: Sequence[str], ready: str, log: Path,
                 log_fifo: Path | None = None) -> None:
        self.argv, self.ready, self.log = list(argv), re.compile(ready), log
        self.log_fifo = log_fifo  # where the ready line appears, when not on stdout
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> Daemon:
        is_ready = threading.Event()
        self.process = subprocess.Popen(self.argv, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        # With a log FIFO, the ready line counts only there (clamd prints some of its
        # start-up lines to stdout before its logger, and so before it listens).
        threading.Thread(target=self._read, args=(self.process.stdout, None if self.log_fifo
                                                  else is_ready), daemon=True).start()
        if self.log_fifo is not None:
            threading.Thread(target=self._read_fifo, args=(self.log_fifo, is_ready),
                             daemon=True).start()
        if not is_ready.wait(timeout):
            self.stop()
            raise AssertionError(f"{self.argv[0]} did not start: see {self.log}")
        return self

    def _read_fifo(self, fifo: Path, is_ready: threading.Event) -> None:
        with fifo.open("rb") as source:  # opens once the daemon opens its end
            self._read(source, is_ready)

    def _read(self, source: IO[bytes] | None, is_ready: threading.Event | None) -> None:
        assert source is not None
        with self.log.open("ab") as copy:
            for line in source:
                copy.write(line)
                copy.flush()
                if is_ready and self.ready.search(line.decode("utf-8", "replace")):
                    is_ready.set()

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGKILL)  # its own group: rspamd's workers too
        process.wait(10)


def start_clamd(folder: Path, *, stream_max: str = "1M") -> tuple[Daemon, Path]:
    """clamd with a database of two signatures: MARKER and EICAR (as custom .ndb ones)."""
    require(CLAMD)
    database = folder / "db"
    database.mkdir(parents=True, exist_ok=True)
    (database / "postroom.ndb").write_text(
        f"Postroom.Test.Marker:0:*:{MARKER.hex()}\nPostroom.Test.EICAR:0:*:{EICAR.hex()}\n")
    sock = folder / "clamd.sock"
    conf = folder / "clamd.conf"
    # clamd logs "listening" only to its LogFile (it refuses /dev/stdout, a symlink): a FIFO
    # the reader thread drains.
    fifo = folder / "clamd.fifo"
    if not fifo.exists():
        os.mkfifo(fifo)
    conf.write_text(f"LocalSocket {sock}\nDatabaseDirectory {database}\nForeground yes\n"
                    f"LogFile {fifo}\nLogFileUnlock yes\nTemporaryDirectory {folder}\n"
                    f"PidFile {folder / 'clamd.pid'}\nStreamMaxLength {stream_max}\n"
                    "User root\nSelfCheck 3600\n")
    # clamd logs the queue length just before listen(); the self-check line comes after.
    daemon = Daemon([CLAMD, "-c", str(conf)], r"Self checking every",
                    folder / "clamd.log", log_fifo=fifo)
    return daemon.start(), sock


def start_redis(folder: Path) -> tuple[Daemon, int]:
    require(REDIS)
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [REDIS, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder),
            "--save", "", "--appendonly", "no", "--daemonize", "no"]
    daemon = Daemon(argv, r"Ready to accept connections", folder / "redis.log")
    return daemon.start(), port


RSPAMD_CONF = """
options {{
  pidfile = "{run}/rspamd.pid";
  dbdir = "{db}";
  filters = "regexp";
  url_tld = "{tld}";
  dns {{ nameserver = ["127.0.0.1:9"]; timeout = 0.2s; retransmits = 1; }}
}}
logging {{ type = "console"; level = "info"; }}
actions {{
  reject = 15; "soft reject" = 11; "rewrite subject" = 8; add_header = 6;
}}
worker "normal" {{ bind_socket = "127.0.0.1:{normal}"; count = 1; }}
worker "controller" {{
  bind_socket = "127.0.0.1:{controller}"; count = 1;
  password = "{password}"; enable_password = "{password}";
}}
regexp {{
  POSTROOM_TAG_ME {{ re = "/postroom-tag-me/i{{body}}"; score = 7.5; }}
  POSTROOM_SUBJECT_ME {{ re = "/postroom-rewrite-me/i{{body}}"; score = 9.0; }}
  POSTROOM_SOFT_ME {{ re = "/postroom-soft-me/i{{body}}"; score = 12.0; }}
}}
classifier "bayes" {{
  backend = "redis"; servers = "127.0.0.1:{redis}";
  min_tokens = 1; min_learns = 1; autolearn = false;
  statfile {{ symbol = "BAYES_HAM"; spam = false; }}
  statfile {{ symbol = "BAYES_SPAM"; spam = true; }}
}}
"""


def start_rspamd(folder: Path, redis_port: int) -> tuple[Daemon, int, int]:
    """rspamd with a normal worker (scans) and a controller (learns), its Bayes in Redis;
    returns the daemon and the two ports."""
    require(RSPAMD)
    for name in ("run", "db"):
        (folder / name).mkdir(parents=True, exist_ok=True)
    tld = folder / "tld.dat"  # a tiny suffix list: Debian's full one takes seconds to load
    tld.write_text("com\norg\nnet\ntest\nexample\n")
    normal, controller = free_port(), free_port()
    conf = folder / "rspamd.conf"
    conf.write_text(RSPAMD_CONF.format(run=folder / "run", db=folder / "db", tld=tld,
                                       normal=normal, controller=controller,
                                       password=RSPAMD_PASSWORD, redis=redis_port))
    argv = [RSPAMD, "-f", "-c", str(conf)]
    if os.geteuid() == 0:  # rspamd refuses to run its workers as root unless told
        argv += ["-u", "root", "-g", "root", "-i"]
    daemon = Daemon(argv, r"starting normal process", folder / "rspamd.log")
    return daemon.start(), normal, controller
