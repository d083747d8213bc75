"""Everything the figures run against: servers, filled mailboxes, configurations, databases.

One ``Environment`` per benchmark run. It starts a private Dovecot (the tests' own, from
``support.servers``) and the SMTP sink, creates one Dovecot user per purpose (a 1k folder, a
100k folder, ...), writes modbot configuration files (TOML, as a counselor would) and opens
fresh SQLite databases for each figure.

The SMTP sink runs in its own process (``smtp_sink.py``) so that its Python work does not share
a GIL with the client being measured.
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import corpus
import trustme
from imapclient import IMAPClient
from support import servers

from modbot import config
from modbot.config import Account

PASSWORD_ENV = "MODBOT_BENCH_PASSWORD"
COUNSELOR = {
    "name": "Morgan Lee",
    "email": "morgan.lee@counsel.example.edu",
    "confidential_contact": "https://counsel.example.edu/secure or 555-0100",
}
TRUSTED = ["mx.counsel.example.edu"]
DIRECTORY_SIZE = 1000  # campus directory entries besides the people in the fixtures
HOST = servers.HOST
PASSWORD = "bench-password-4711"  # every benchmark user's, on a throwaway server on loopback
BENCH = Path(__file__).resolve().parent


def client_tls(ca_file: Path) -> ssl.SSLContext:
    """One verifying client context trusting the benchmark's CA (shared by every baseline)."""
    context = ssl.create_default_context(cafile=str(ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class SmtpSink:
    """aiosmtpd with implicit TLS in its own process; it accepts messages and discards them."""

    def __init__(self, cert: trustme.LeafCert, directory: Path) -> None:
        cert_file, key_file = directory / "smtp-cert.pem", directory / "smtp-key.pem"
        cert.cert_chain_pems[0].write_to_path(cert_file)
        cert.private_key_pem.write_to_path(key_file)
        key_file.chmod(0o600)
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        for _ in range(5):
            self.port = servers.free_port()
            self.process = subprocess.Popen(
                [sys.executable, str(BENCH / "smtp_sink.py"), HOST, str(self.port),
                 str(cert_file), str(key_file)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                preexec_fn=servers._die_with_parent)
            assert self.process.stdout is not None
            if self.process.stdout.readline().startswith(b"ready"):
                return
            self.stop()
        raise servers.ServerUnavailable("the aiosmtpd sink did not start")

    def stop(self) -> None:
        if self.process is not None:
            servers.stop_process(self.process)


@dataclass
class User:
    name: str
    maildir: corpus.Maildir
    size: int = 0


@dataclass
class Environment:
    """The servers and files of one run; ``close()`` stops and removes everything."""

    work: Path
    ca_file: Path
    dovecot: servers.Dovecot
    smtp: SmtpSink
    directory_csv: Path
    users: dict[str, User] = field(default_factory=dict)
    _serial: int = 0

    @classmethod
    def start(cls) -> Environment:
        work = Path(tempfile.mkdtemp(prefix="mbb-work-", dir="/tmp"))
        work.chmod(0o755)
        ca = trustme.CA()
        cert = ca.issue_cert(*servers.CERT_NAMES)
        ca_file = work / "ca.pem"
        ca.cert_pem.write_to_path(ca_file)
        ca_file.chmod(0o644)
        dovecot = None
        try:
            dovecot = servers.start_dovecot(cert, client_tls(ca_file))
            smtp = SmtpSink(cert, work)
        except BaseException:
            if dovecot is not None:
                dovecot.stop()
            shutil.rmtree(work, ignore_errors=True)
            raise
        os.environ[PASSWORD_ENV] = PASSWORD
        directory = work / "directory.csv"
        directory.write_text(_directory_csv(), encoding="utf-8")
        return cls(work, ca_file, dovecot, smtp, directory)

    def close(self) -> None:
        self.smtp.stop()
        self.dovecot.stop()
        shutil.rmtree(self.work, ignore_errors=True)

    # mailboxes ----------------------------------------------------------------------------

    def add_user(self, name: str, size: int, *, linkedin_every: int = 20) -> User:
        """A user whose INBOX holds ``size`` messages (1 in ``linkedin_every`` LinkedIn's),
        written as files and then indexed by Dovecot (without fsync: filling only)."""
        self.dovecot.add_user(name, PASSWORD)
        path = self.dovecot.maildir(name)
        owner = path.stat()
        user = User(name, corpus.Maildir(path, owner.st_uid, owner.st_gid))
        if size:
            user.size = user.maildir.fill(corpus.mixed(size, linkedin_every=linkedin_every))
        # Dovecot reads the maildir, assigns UIDs and writes its index; the search caches the
        # From headers that imapfilter's search needs, as a running mailbox would have them.
        self.dovecot.doveadm("index", "-u", name, "INBOX", fast=True)
        self.dovecot.doveadm("search", "-u", name, "mailbox", "INBOX", "FROM", "linkedin.com",
                             fast=True)
        self.users[name] = user
        return user

    def add_empty_users(self, prefix: str, count: int) -> list[User]:
        """``count`` users with empty INBOXes (``prefix`` and a number), made quickly: a
        passwd-file and a maildir each, no doveadm run (Dovecot indexes an empty folder at its
        first SELECT)."""
        made = []
        for number in range(1, count + 1):
            name = f"{prefix}{number:03d}"
            self.dovecot.add_user(name, PASSWORD)
            path = self.dovecot.maildir(name)
            owner = path.stat()
            made.append(self.users.setdefault(
                name, User(name, corpus.Maildir(path, owner.st_uid, owner.st_gid))))
        return made

    def connect(self, user: str) -> IMAPClient:
        """A raw imapclient connection, logged in, over verified TLS (the baselines' client)."""
        client = IMAPClient(HOST, self.dovecot.imaps_port, ssl=True,
                            ssl_context=client_tls(self.ca_file), timeout=60)
        client.login(user, PASSWORD)
        return client

    def sync(self, user: str) -> None:
        """Have Dovecot take in newly delivered files (as any client session would)."""
        client = self.connect(user)
        try:
            client.select_folder("INBOX")
            client.noop()
        finally:
            client.logout()

    def settle(self, user: str) -> None:
        """Take in files delivered behind Dovecot's back the way its own delivery would leave
        the folder: synced, and not "dirty".

        Dovecot cannot trust a maildir directory whose mtime is the current second, so the
        first session more than a second later re-reads the whole ``cur/`` (about 0.3 s for
        100,000 files). Its own delivery agent updates the index itself and never causes that,
        so that cost belongs to this way of filling, and a second sync after a second pays it
        before anything is measured.
        """
        self.sync(user)
        wait_quiet()
        self.sync(user)

    # configuration ------------------------------------------------------------------------

    def config_file(self, user: str, *, mode: str = "shadow", **policy: Any) -> Path:
        """A modbot TOML configuration for ``user`` with a fresh SQLite database."""
        counselor = "".join(f"{key} = {_toml(value)}\n" for key, value in COUNSELOR.items())
        return self._write(f"{user}", f"[counselor]\n{counselor}\n{self._servers('', user)}",
                           mode, policy)

    def accounts_file(self, users: list[str], *, mode: str = "shadow", **policy: Any) -> Path:
        """One configuration with an ``[[accounts]]`` table per user, all in one SQLite
        database, as a career center running every counselor's inbox in one daemon writes it:
        each account its own counselor, IMAP login and SMTP server; the policy and the
        directory shared."""
        tables = "".join(f"""
[[accounts]]
[accounts.counselor]
name = "Counselor {number}"
email = "counselor{number}@counsel.example.edu"
confidential_contact = {_toml(COUNSELOR["confidential_contact"])}

{self._servers("accounts.", user)}""" for number, user in enumerate(users, start=1))
        return self._write(f"accounts-{len(users)}", tables, mode, policy, inboxes_last=True)

    def _servers(self, prefix: str, user: str) -> str:
        """The [imap] and [smtp] tables (under ``prefix``) for ``user`` on the test servers."""
        return f"""\
[{prefix}imap]
host = "{HOST}"
port = {self.dovecot.imaps_port}
username = "{user}"
password_env = "{PASSWORD_ENV}"
security = "tls"
ca_file = "{self.ca_file}"

[{prefix}smtp]
host = "{HOST}"
port = {self.smtp.port}
security = "tls"
ca_file = "{self.ca_file}"
"""

    def _write(self, stem: str, inboxes: str, mode: str, policy: dict[str, Any], *,
               inboxes_last: bool = False) -> Path:
        """The file: ``inboxes`` with a fresh SQLite database, the policy and the directory."""
        self._serial += 1
        name = f"{stem}-{self._serial}"
        policy = {"look_back_days": 0, **policy}
        policy_lines = "".join(f"{key} = {_toml(value)}\n" for key, value in policy.items())
        shared = f"""\
[database]
url = "sqlite:///{self.work / (name + '.db')}"

[policy]
mode = "{mode}"
trusted_authserv_ids = {_toml(TRUSTED)}
{policy_lines}
[directory]
csv = "{self.directory_csv}"

[logging]
level = "WARNING"
"""
        text = f"{shared}{inboxes}" if inboxes_last else f"{inboxes}\n{shared}"
        path = self.work / f"{name}.toml"
        path.write_text(text, encoding="utf-8")
        return path

    def settings(self, user: str, *, mode: str = "shadow", **policy: Any) -> Account:
        return config.load(self.config_file(user, mode=mode, **policy)).first


def _toml(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)


def _directory_csv() -> str:
    """A campus directory: everyone named in the fixtures, plus generated people."""
    expected = tomllib.loads((corpus.DATA / "expected.toml").read_text(encoding="utf-8"))
    rows = ["name,email,linkedin_url"]
    names = sorted({facts["name"] for facts in expected.values() if facts.get("name")})
    for index, name in enumerate(names):
        rows.append(f"{name},person{index}@students.example.edu,")
    first = ("Alex", "Blair", "Casey", "Devon", "Emery", "Finley", "Gray", "Harper", "Indy",
             "Jules")
    last = ("Adams", "Brooks", "Cruz", "Diaz", "Evans", "Fox", "Garcia", "Hughes", "Ito", "Jones")
    for index in range(DIRECTORY_SIZE):
        name = f"{first[index % 10]} {last[index // 10 % 10]} {index}"
        rows.append(f"{name},student{index}@students.example.edu,"
                    f"https://www.linkedin.com/in/student-{index}")
    return "\n".join(rows) + "\n"


def wait_quiet(seconds: float = 1.1) -> None:
    """Let a second boundary pass: Dovecot re-reads a maildir changed within the same second."""
    time.sleep(seconds)
