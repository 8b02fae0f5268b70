"""JMAP Email/changes after 10,000 deliveries (issue 23's target: < 50 ms), over HTTPS.

Owns one manual run per backend (`python -m bench.jmapchanges [--messages 10000]
[--postgresql]`): postroom with its web listener, one account with a cheap hash; the
state is read, smtp-source delivers `--messages` 4 KB messages over SMTP, and then
Email/changes from the old state is timed end to end (request to parsed answer, a kept
TLS connection), `--repeats` times, with Mailbox/changes and Email/changes from the
newest state (nothing to report) for comparison. Prints one line per figure.

Invariants: every answer is checked (the created list holds every delivered message),
so a fast wrong answer cannot pass as a result.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import ssl
import statistics
import subprocess
import sys
import time
from typing import Any

from bench.harness import HOST, PASSWORD, WORK_DIR, bench_user, wait_until
from bench.pg import PgCluster
from bench.references import smtp_source_path
from bench.smtp_load import CLIENT_NAME, SENDER
from bench.target import Postroom

USER = bench_user(7)
USING = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"]
WEB_PORT = 48443


class Api:
    """JMAP calls on one kept-alive TLS connection (the bench's self-signed certificate)."""

    def __init__(self, port: int, password: str) -> None:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        self.conn = http.client.HTTPSConnection(HOST, port, context=context, timeout=120)
        token = base64.b64encode(f"{USER}:{password}".encode()).decode()
        self.headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json"}
        self.conn.request("GET", "/.well-known/jmap", headers=self.headers)
        session = json.loads(self.conn.getresponse().read())
        self.account = session["primaryAccounts"]["urn:ietf:params:jmap:mail"]

    def call(self, name: str, arguments: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        body = json.dumps({"using": USING, "methodCalls": [
            [name, {"accountId": self.account, **arguments}, "0"]]})
        started = time.perf_counter()
        self.conn.request("POST", "/jmap/api/", body=body, headers=self.headers)
        answer = json.loads(self.conn.getresponse().read())
        elapsed = time.perf_counter() - started
        reply_name, reply, _ = answer["methodResponses"][0]
        if reply_name != name:
            raise RuntimeError(f"{name} answered {reply_name}: {reply}")
        return elapsed, reply


def deliver(postroom: Postroom, messages: int) -> None:
    subprocess.run([smtp_source_path(), "-l", "4096", "-m", str(messages), "-s", "10",
                    "-f", SENDER, "-t", USER, "-M", CLIENT_NAME,
                    f"{HOST}:{postroom.port('smtp')}"], check=True, capture_output=True)
    wait_until(lambda: postroom.delivered(USER) >= messages, 600, "the deliveries")


def timed(api: Api, name: str, arguments: dict[str, Any], repeats: int,
          check: Any) -> float:  # fmt: skip
    times = []
    for _ in range(repeats):
        elapsed, reply = api.call(name, arguments)
        check(reply)
        times.append(elapsed * 1000)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--postgresql", action="store_true")
    args = parser.parse_args()
    cluster = PgCluster() if args.postgresql else None
    postroom = Postroom(root=WORK_DIR / "jmapchanges",
                        storage="postgresql" if cluster else "sqlite",
                        extra_env={"WEB_PORT": str(WEB_PORT)})
    try:
        if cluster is not None:
            cluster.start()
            postroom.database_url = cluster.create_database("jmapchanges")
        postroom.configure()
        postroom.add_accounts([], [USER])
        postroom.start()
        api = Api(WEB_PORT, PASSWORD)
        _, before = api.call("Email/get", {"ids": []})
        deliver(postroom, args.messages)
        api = Api(WEB_PORT, PASSWORD)  # a fresh connection: the idle one timed out meanwhile

        def every_message(reply: dict[str, Any]) -> None:
            if len(reply["created"]) != args.messages or reply["destroyed"]:
                raise RuntimeError(f"Email/changes listed {len(reply['created'])} created")

        changes = timed(api, "Email/changes", {"sinceState": before["state"]},
                        args.repeats, every_message)
        mailboxes = timed(api, "Mailbox/changes", {"sinceState": before["state"]},
                          args.repeats, lambda reply: None)
        _, now = api.call("Email/get", {"ids": []})
        nothing = timed(api, "Email/changes", {"sinceState": now["state"]}, args.repeats,
                        lambda reply: None)
    finally:
        postroom.stop()
        if cluster is not None:
            cluster.stop()
    backend = "PostgreSQL" if cluster else "SQLite"
    print(f"{backend}: Email/changes after {args.messages} deliveries: {changes:.1f} ms "
          f"(p50 of {args.repeats}); Mailbox/changes {mailboxes:.1f} ms; "
          f"Email/changes with nothing new {nothing:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
