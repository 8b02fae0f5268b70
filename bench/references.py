"""The reference servers: private Postfix and Dovecot instances for the benchmarks.

Owns writing their configuration under bench/work/{postfix,dovecot}/, starting and
stopping them, creating bench users, and counting delivered mail in their Maildirs.

Invariants (reference/bench-notes.md):
- Never the system's default instances: Postfix runs with `postfix -c OUR_DIR` (its own
  queue, data and mail directories), Dovecot with `dovecot -c OUR_FILE` (its own base_dir).
  Both listen on 127.0.0.1 high ports only and are stopped by their own PID/command.
- Postfix delivers with virtual(8) to Maildirs (the docker-mailserver path); virtual(8)
  fsyncs each file before the rename, and the queue file is fsynced before 250.
- Dovecot serves IMAP and POP3 from Maildirs with a passwd-file of the bench users.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from passlib.hash import sha512_crypt

from bench.harness import (
    DOMAIN,
    HOST,
    PASSWORD,
    PORTS,
    WORK_DIR,
    bench_user,
    is_port_open,
    run,
    wait_until,
)

VMAIL_UID = 65534  # nobody: virtual(8) and Dovecot both refuse to deliver as root
VMAIL_GID = 65534
SYSTEM_MASTER_CF = Path("/etc/postfix/master.cf")


def maildir_count(maildir: Path) -> int:
    """Messages in a Maildir (new/ + cur/); 0 when it does not exist yet."""
    total = 0
    for sub in ("new", "cur"):
        with contextlib.suppress(FileNotFoundError):
            total += sum(1 for _ in os.scandir(maildir / sub))
    return total


def package_version(package: str) -> str:
    result = run(["dpkg-query", "-W", "-f", "${Version}", package], check=False)
    return result.stdout.strip() or "not installed"


# --- Postfix ----------------------------------------------------------------------------


@dataclass
class Postfix:
    users: int
    port: int = PORTS.postfix_smtp
    root: Path = WORK_DIR / "postfix"

    @property
    def config_dir(self) -> Path:
        return self.root / "etc"

    @property
    def mail_base(self) -> Path:
        return self.root / "vmail"

    def maildir(self, address: str) -> Path:
        local, domain = address.split("@")
        return self.mail_base / domain / local

    def delivered(self, address: str) -> int:
        return maildir_count(self.maildir(address))

    def configure(self) -> None:
        """Fresh queue, mailboxes and config each time: old mail skews the counts."""
        self.stop()
        if self.root.exists():
            shutil.rmtree(self.root)
        for sub in ("etc", "queue", "data", "vmail", "log"):
            (self.root / sub).mkdir(parents=True)
        for sub in ("data", "vmail"):
            os.chown(self.root / sub, VMAIL_UID if sub == "vmail" else _postfix_uid(),
                     VMAIL_GID if sub == "vmail" else _postfix_gid())
        (self.config_dir / "main.cf").write_text(self._main_cf())
        (self.config_dir / "master.cf").write_text(self._master_cf())
        maps = "".join(f"{bench_user(i)} {DOMAIN}/user{i}/\n" for i in range(1, self.users + 1))
        (self.config_dir / "vmailbox").write_text(maps)
        run(["postmap", "-c", str(self.config_dir), f"hash:{self.config_dir}/vmailbox"])
        # Debian's chroot needs the init script's file copies; we run unchrooted.
        run(["postconf", "-c", str(self.config_dir), "-F", "*/*/chroot = n"])
        run(["postfix", "-c", str(self.config_dir), "check"])

    def _main_cf(self) -> str:
        root = self.root
        return f"""# Written by bench/references.py: a private Postfix for benchmarks only.
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
meta_directory = /etc/postfix
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = reference.{DOMAIN}
mydomain = {DOMAIN}
myorigin = $myhostname
mydestination =
inet_interfaces = {HOST}
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
alias_maps =
alias_database =
local_recipient_maps =
relayhost =
biff = no
smtp_dns_support_level = disabled
smtpd_peername_lookup = no
disable_dns_lookups = yes
virtual_mailbox_domains = {DOMAIN}
virtual_mailbox_maps = hash:{self.config_dir}/vmailbox
virtual_mailbox_base = {self.mail_base}
virtual_uid_maps = static:{VMAIL_UID}
virtual_gid_maps = static:{VMAIL_GID}
virtual_minimum_uid = 100
# Must be >= message_size_limit (or 0), else virtual(8) exits fatally (bench-notes.md).
virtual_mailbox_limit = 0
message_size_limit = 20480000
maillog_file = {root}/log/maillog
maillog_file_prefixes = {root}/log
smtpd_banner = $myhostname ESMTP
"""

    def _master_cf(self) -> str:
        """The system's master.cf with the public smtpd moved to 127.0.0.1:PORT."""
        lines = []
        for line in SYSTEM_MASTER_CF.read_text().splitlines():
            fields = line.split()
            if fields[:2] == ["smtp", "inet"]:
                line = f"{HOST}:{self.port} inet n - n - - smtpd"
            elif fields[:2] in (["submission", "inet"], ["smtps", "inet"]):
                continue
            lines.append(line)
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        if is_port_open(self.port):
            raise RuntimeError(f"port {self.port} is busy before Postfix started")
        run(["postfix", "-c", str(self.config_dir), "start"])
        wait_until(lambda: is_port_open(self.port), 30, "Postfix to listen")

    def stop(self) -> None:
        if (self.config_dir / "main.cf").exists():
            run(["postfix", "-c", str(self.config_dir), "stop"], check=False)
            wait_until(lambda: not self._master_pid(), 30, "Postfix to stop")

    def _master_pid(self) -> int | None:
        pid_file = self.root / "queue" / "pid" / "master.pid"
        with contextlib.suppress(OSError, ValueError):
            pid = int(pid_file.read_text().split()[0])
            os.kill(pid, 0)
            return pid
        return None

    @property
    def pid(self) -> int | None:
        return self._master_pid()

    def truncate_log(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.truncate(self.root / "log" / "maillog", 0)


def _postfix_uid() -> int:
    import pwd

    return pwd.getpwnam("postfix").pw_uid


def _postfix_gid() -> int:
    import grp

    return grp.getgrnam("postfix").gr_gid


# --- Dovecot ----------------------------------------------------------------------------


@dataclass
class Dovecot:
    users: int
    cert_path: Path
    key_path: Path
    imap_port: int = PORTS.dovecot_imap
    imaps_port: int = PORTS.dovecot_imaps
    pop3_port: int = PORTS.dovecot_pop3
    pop3s_port: int = PORTS.dovecot_pop3s
    root: Path = WORK_DIR / "dovecot"

    @property
    def config_file(self) -> Path:
        return self.root / "dovecot.conf"

    def home(self, address: str) -> Path:
        local, domain = address.split("@")
        return self.root / "mail" / domain / local

    def maildir(self, address: str) -> Path:
        return self.home(address) / "Maildir"

    def configure(self) -> None:
        self.stop()
        if self.root.exists():
            shutil.rmtree(self.root)
        for sub in ("run", "state", "mail", "log"):
            (self.root / sub).mkdir(parents=True)
        os.chown(self.root / "mail", VMAIL_UID, VMAIL_GID)
        # docker-mailserver's scheme and cost (`doveadm pw -s SHA512-CRYPT`: glibc's
        # default 5,000 rounds; passlib's own default would be 656,000).
        digest = "{SHA512-CRYPT}" + sha512_crypt.using(rounds=5000).hash(PASSWORD)
        passwd = "".join(f"{bench_user(i)}:{digest}::::::\n"
                         for i in range(1, self.users + 1))
        (self.root / "passwd").write_text(passwd)
        self.config_file.write_text(self._config())
        run(["doveconf", "-c", str(self.config_file), "-n"])

    def _config(self) -> str:
        root = self.root
        return f"""# Written by bench/references.py: a private Dovecot for benchmarks only.
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/log/dovecot.log
info_log_path = {root}/log/dovecot.log
protocols = imap pop3
listen = {HOST}
ssl = yes
ssl_cert = <{self.cert_path}
ssl_key = <{self.key_path}
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 100
mail_location = maildir:~/Maildir
pop3_uidl_format = %08Xu%08Xv
passdb {{
  driver = passwd-file
  args = username_format=%u {root}/passwd
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {root}/passwd
  default_fields = uid={VMAIL_UID} gid={VMAIL_GID} home={root}/mail/%d/%n
}}
namespace inbox {{
  inbox = yes
  separator = /
}}
service imap-login {{
  inet_listener imap {{
    address = {HOST}
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    address = {HOST}
    port = {self.imaps_port}
    ssl = yes
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = {HOST}
    port = {self.pop3_port}
  }}
  inet_listener pop3s {{
    address = {HOST}
    port = {self.pop3s_port}
    ssl = yes
  }}
}}
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""

    def start(self) -> None:
        for port in (self.imap_port, self.imaps_port, self.pop3_port, self.pop3s_port):
            if is_port_open(port):
                raise RuntimeError(f"port {port} is busy before Dovecot started")
        # The daemon keeps inherited descriptors open: a captured pipe would never close.
        with (self.root / "log" / "start.log").open("ab") as log:
            result = subprocess.run(["dovecot", "-c", str(self.config_file)],
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    check=False)
        if result.returncode != 0:
            tail = (self.root / "log" / "start.log").read_text()[-500:]
            raise RuntimeError(f"dovecot failed to start: {tail}")
        wait_until(lambda: is_port_open(self.imaps_port) and is_port_open(self.pop3s_port),
                   30, "Dovecot to listen")

    @property
    def pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            pid = int((self.root / "run" / "master.pid").read_text().split()[0])
            os.kill(pid, 0)
            return pid
        return None

    def stop(self) -> None:
        pid = self.pid
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: self.pid is None, 30, "Dovecot to stop")

    def write_messages(self, address: str, messages: list[bytes]) -> None:
        """Fill a Maildir directly (fast; Dovecot indexes it on first SELECT)."""
        maildir = self.maildir(address)
        for sub in ("new", "cur", "tmp"):
            (maildir / sub).mkdir(parents=True, exist_ok=True)
        for index, body in enumerate(messages):
            name = f"1700000000.M{index}P1.bench,S={len(body)}"
            (maildir / "new" / name).write_bytes(body)
        run(["chown", "-R", f"{VMAIL_UID}:{VMAIL_GID}", str(self.home(address))])


def versions() -> dict[str, str]:
    postfix = run(["postconf", "-d", "-h", "mail_version"], check=False).stdout.strip()
    dovecot = run(["dovecot", "--version"], check=False).stdout.strip()
    return {
        "Postfix": postfix or package_version("postfix"),
        "Dovecot": re.sub(r"\s+", " ", dovecot) or package_version("dovecot-core"),
    }


def smtp_source_path() -> str:
    for candidate in ("/usr/sbin/smtp-source", "/usr/lib/postfix/smtp-source"):
        if Path(candidate).exists():
            return candidate
    found = shutil.which("smtp-source")
    if not found:
        raise RuntimeError("smtp-source not found: install the postfix package")
    return found


def stop_quietly(*servers: Postfix | Dovecot) -> None:
    for server in servers:
        with contextlib.suppress(Exception):
            server.stop()

