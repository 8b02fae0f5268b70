"""Run a whole postroom App for tests: in a background thread, or as a subprocess.

`AppThread` lets blocking clients (smtplib, poplib, imaplib, swaks) talk to a real server
started from a Config; `ServeProcess` runs `postroom serve` exactly as a user would, for
restart and signal tests. Both bind ephemeral ports (port 0) and report what was bound;
`local_serve_env` holds the settings every served test instance shares.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from postroom.app import App
from postroom.config import Config
from postroom.runtime import Runtime
from tests.conftest import TEST_HOSTNAME
from tests.support.loops import chosen_loop_factory, serve_loop_env
from tests.support.storage import storage_settings

T = TypeVar("T")


class AppThread:
    """An App on its own event loop in a daemon thread."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.loop = chosen_loop_factory()()
        self.app = App(config, drain_seconds=5)
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> AppThread:
        self._thread.start()
        self.call(self.app.start())
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if not self.loop.is_running():
            return
        self.call(self.app.stop(), timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout)

    @property
    def runtime(self) -> Runtime:
        return self.app.runtime

    def port(self, name: str) -> int:
        return self.app.port(name)

    def add_account(self, address: str, password: str) -> None:
        self.call(self.runtime.accounts.add_account(address, password))

    def inbox_messages(self, address: str, mailbox: str = "INBOX") -> list[bytes]:
        """The raw bytes of every message in an account's mailbox, in UID order."""

        async def read() -> list[bytes]:
            store = self.runtime.store
            account = await store.get_account(address)
            assert account is not None, address
            box = await store.get_mailbox(account.id, mailbox)
            assert box is not None, mailbox
            rows = await store.list_messages(box.id)
            return [await self.runtime.blobs.read(row.blob_id) for row in rows]

        return self.call(read())


_LISTENING = re.compile(r"postroom: (\S+) listening on (\S+):(\d+)")

# Inbound SPF/DKIM/DMARC would ask real DNS about the test senders: off where not tested.
NO_DNS_CHECKS = {"ENABLE_POLICYD_SPF": 0, "ENABLE_OPENDKIM": 0, "ENABLE_OPENDMARC": 0}


def local_serve_env(data_dir: Path, cert: tuple[Path, Path],
                    **overrides: object) -> dict[str, object]:
    """The settings for a `postroom serve` under test (give them to `write_env`): the test
    hostname, `data_dir`, the TLS files `cert` (chain path, key path) and every listener on
    127.0.0.1 port 0. `overrides` add keys or replace these (LISTEN_ADDRESS, SMTP_PORT…)."""
    return {
        "OVERRIDE_HOSTNAME": TEST_HOSTNAME, "DATA_DIR": data_dir,
        "LISTEN_ADDRESS": "127.0.0.1", "SSL_TYPE": "manual",
        "SSL_CERT_PATH": cert[0], "SSL_KEY_PATH": cert[1],
        "SMTP_PORT": 0, "SUBMISSION_PORT": 0, "SUBMISSIONS_PORT": 0, "IMAP_PORT": 0,
        "IMAPS_PORT": 0, "POP3_PORT": 0, "POP3S_PORT": 0, "MTA_STS_PORT": 0, **overrides,
    }


def write_env(path: Path, values: Mapping[str, object]) -> Path:
    """An env file of `values` (plus, under the PostgreSQL test pass, the database of its
    DATA_DIR unless STORAGE is given: tests/support/storage.py)."""
    if "STORAGE" not in values and "DATA_DIR" in values:
        values = {**values, **storage_settings(values["DATA_DIR"])}
    path.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
    return path


class ServeProcess:
    """`postroom --config FILE serve` in a subprocess; ports parsed from its start lines."""

    def __init__(self, env_file: Path, extra_env: Mapping[str, str] | None = None) -> None:
        self.env_file = env_file
        self.extra_env = dict(extra_env or {})
        self.ports: dict[str, int] = {}
        self.process: subprocess.Popen[str] | None = None
        self.output: list[str] = []

    def start(self, timeout: float = 30) -> ServeProcess:
        env = {**os.environ, **serve_loop_env(), **self.extra_env}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "postroom", "--config", str(self.env_file), "serve"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )
        self.ports = {}
        deadline = time.monotonic() + timeout
        assert self.process.stdout is not None
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError("postroom serve exited:\n" + "".join(self.output))
            self.output.append(line)
            match = _LISTENING.search(line)
            if match:
                self.ports[match.group(1)] = int(match.group(3))
            if "postroom: ready as " in line:  # not any line saying "already"
                threading.Thread(target=self._drain_output, daemon=True).start()
                return self
        raise TimeoutError("postroom serve did not start:\n" + "".join(self.output))

    def _drain_output(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.stop()
