"""The benchmark's own mail servers on loopback: a private Dovecot and an aiosmtpd sink.

Dovecot gets its own config, state, log and maildirs under a fresh directory in /tmp (the same
recipe as ``tests/servers.py``: a non-root mail uid, traversable parents, a short ``base_dir``),
with settings left at Dovecot's defaults wherever they matter to a measurement. The only speed
setting, ``mail_fsync = never``, is given to the ``doveadm`` runs that index a freshly filled
maildir, never to the server that is measured.

The SMTP sink runs in its own process (``smtp_sink.py``) so that its Python work does not share
a GIL with the client being measured.
"""

from __future__ import annotations

import contextlib
import ctypes
import grp
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import trustme

HOST = "127.0.0.1"
CERT_NAMES = ("127.0.0.1", "localhost")
DOVECOT = "/usr/sbin/dovecot"
DOVEADM = "/usr/bin/doveadm"
MAIL_USER = "modbot-test"  # the same system user the integration tests create
PASSWORD = "bench-password-4711"  # loopback only, for a throwaway server
BENCH_DIR = Path(__file__).resolve().parent


class Unavailable(Exception):
    """A server could not be found or started; the message says why."""


def free_port() -> int:
    """A port that was free a moment ago (callers retry if it is taken meanwhile)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def die_with_parent() -> None:
    """Ask Linux to send SIGTERM to this child when the benchmark dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)


@dataclass(frozen=True)
class Certificates:
    """A throwaway CA, a server certificate for 127.0.0.1, and the CA as a PEM file."""

    ca: trustme.CA
    leaf: trustme.LeafCert
    ca_file: Path

    @classmethod
    def make(cls, directory: Path) -> Certificates:
        ca = trustme.CA()
        leaf = ca.issue_cert(*CERT_NAMES)
        ca_file = directory / "ca.pem"
        ca.cert_pem.write_to_path(ca_file)
        ca_file.chmod(0o644)
        return cls(ca, leaf, ca_file)

    def write_server_files(self, directory: Path) -> tuple[Path, Path]:
        cert, key = directory / "cert.pem", directory / "key.pem"
        self.leaf.cert_chain_pems[0].write_to_path(cert)
        self.leaf.private_key_pem.write_to_path(key)
        cert.chmod(0o644)
        key.chmod(0o600)
        return cert, key


_CONF = """\
# A private Dovecot for modbot's benchmark. Defaults are kept wherever they affect a figure.
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = {host}
ssl = required
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem
auth_mechanisms = plain login
# One passwd-file per user: Dovecot re-reads a changed passwd-file at most once a second, but
# opens one it has not seen before at once, so a user added mid-run can log in immediately.
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {root}/users/%u
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}
mail_location = maildir:~/Maildir
first_valid_uid = 1
first_valid_gid = 1
# The daemon, the baselines and an IDLE watcher connect at once; the default is 10.
mail_max_userip_connections = 100
default_login_user = {login_user}
default_internal_user = {internal_user}
default_internal_group = {internal_group}
shutdown_clients = yes
service imap-login {{
  chroot =
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = {port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service ipc {{
  chroot =
}}
"""


@dataclass(frozen=True)
class Accounts:
    mail_uid: int
    mail_gid: int
    login_user: str
    internal_user: str
    internal_group: str


def accounts() -> Accounts:
    """As root: mail owned by a non-root user, Dovecot's own users for the rest; else: me."""
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid())
        return Accounts(me.pw_uid, me.pw_gid, me.pw_name, me.pw_name,
                        grp.getgrgid(os.getegid()).gr_name)
    try:
        mail = pwd.getpwnam(MAIL_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                        "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", MAIL_USER],
                       capture_output=True, check=False, timeout=30)
        try:
            mail = pwd.getpwnam(MAIL_USER)
        except KeyError:
            mail = pwd.getpwnam("nobody")
    try:
        group = grp.getgrgid(pwd.getpwnam("dovecot").pw_gid).gr_name
        pwd.getpwnam("dovenull")
    except KeyError:
        raise Unavailable("the system users 'dovecot' and 'dovenull' are missing") from None
    return Accounts(mail.pw_uid, mail.pw_gid, "dovenull", "dovecot", group)


class Dovecot:
    """A running private Dovecot with implicit TLS on ``port``; ``stop()`` removes it."""

    def __init__(self, certs: Certificates) -> None:
        for binary in (DOVECOT, DOVEADM):
            if not os.access(binary, os.X_OK):
                raise Unavailable(f"{binary} is missing: apt-get install dovecot-imapd")
        self.accounts = accounts()
        self.root = Path(tempfile.mkdtemp(prefix="mbb-", dir="/tmp"))
        self.root.chmod(0o755)
        certs.write_server_files(self.root)
        (self.root / "home").mkdir(mode=0o755)
        (self.root / "users").mkdir(mode=0o755)
        os.chown(self.root / "home", self.accounts.mail_uid, self.accounts.mail_gid)
        self.users: list[str] = []
        self.config = self.root / "dovecot.conf"
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    def add_user(self, name: str) -> Path:
        """Create ``name`` with an empty maildir; return the maildir's path."""
        self.users.append(name)
        passwd = self.root / "users" / name
        passwd.write_text(f"{name}:{{PLAIN}}{PASSWORD}\n")
        passwd.chmod(0o644)
        maildir = self.root / "home" / name / "Maildir"
        for path in (maildir.parent, maildir, maildir / "cur", maildir / "new", maildir / "tmp"):
            path.mkdir(mode=0o700, exist_ok=True)
            os.chown(path, self.accounts.mail_uid, self.accounts.mail_gid)
        return maildir

    def start(self, attempts: int = 5) -> None:
        for _ in range(attempts):
            self.port = free_port()
            a = self.accounts
            self.config.write_text(_CONF.format(
                root=self.root, host=HOST, uid=a.mail_uid, gid=a.mail_gid, port=self.port,
                login_user=a.login_user, internal_user=a.internal_user,
                internal_group=a.internal_group))
            with (self.root / "stderr.log").open("wb") as stderr:
                self.process = subprocess.Popen(
                    [DOVECOT, "-F", "-c", str(self.config)], stdin=subprocess.DEVNULL,
                    stdout=stderr, stderr=stderr, preexec_fn=die_with_parent)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.process.poll() is None:
                if _listening(self.port):
                    return
                time.sleep(0.02)
            self._terminate()
            if "Address already in use" not in self.log_tail():
                break
        raise Unavailable(f"Dovecot did not start: {self.log_tail()}")

    def doveadm(self, *args: str, fast: bool = False) -> str:
        """Run ``doveadm`` against this instance; ``fast`` skips fsync (for filling only)."""
        command = [DOVEADM, "-c", str(self.config)]
        if fast:
            command += ["-o", "mail_fsync=never"]
        done = subprocess.run([*command, *args], capture_output=True, text=True, check=False,
                              timeout=600)
        if done.returncode != 0:
            raise Unavailable(f"doveadm {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def log_tail(self, lines: int = 15) -> str:
        text = ""
        for name in ("stderr.log", "dovecot.log"):
            with contextlib.suppress(OSError):
                text += (self.root / name).read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def imap_processes(self) -> int:
        """How many Dovecot ``imap`` processes run now (one per open connection)."""
        return sum(1 for _ in _children_named(self.process.pid if self.process else 0, "imap"))

    def _terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def stop(self) -> None:
        self._terminate()
        shutil.rmtree(self.root, ignore_errors=True)


def _children_named(parent: int, name: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        if comm == name and ppid == parent:
            found.append(int(entry.name))
    return found


def _listening(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


class SmtpSink:
    """aiosmtpd with implicit TLS in its own process; it counts messages and discards them."""

    def __init__(self, certs: Certificates, directory: Path) -> None:
        cert, key = certs.write_server_files(directory)
        self.port = 0
        self.count_file = directory / "smtp-count"
        self.process: subprocess.Popen[bytes] | None = None
        for _ in range(5):
            self.port = free_port()
            self.process = subprocess.Popen(
                [sys.executable, str(BENCH_DIR / "smtp_sink.py"), HOST, str(self.port),
                 str(cert), str(key)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent)
            assert self.process.stdout is not None
            line = self.process.stdout.readline()
            if line.startswith(b"ready"):
                return
            self.stop()
        raise Unavailable("the aiosmtpd sink did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def client_tls(ca_file: Path) -> ssl.SSLContext:
    """One verifying client context trusting the benchmark's CA (shared by every baseline)."""
    context = ssl.create_default_context(cafile=str(ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
