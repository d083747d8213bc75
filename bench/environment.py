"""Everything the figures run against: servers, filled mailboxes, configurations, databases.

One ``Environment`` per benchmark run. It starts the private Dovecot and the SMTP sink, creates
one Dovecot user per purpose (a 1k folder, a 100k folder, ...), writes modbot configuration files
(TOML, as a counselor would) and opens fresh SQLite databases for each figure.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import corpus
import mailservers
from imapclient import IMAPClient

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


@dataclass
class User:
    name: str
    maildir: corpus.Maildir
    size: int = 0


@dataclass
class Environment:
    """The servers and files of one run; ``close()`` stops and removes everything."""

    work: Path
    certs: mailservers.Certificates
    dovecot: mailservers.Dovecot
    smtp: mailservers.SmtpSink
    directory_csv: Path
    users: dict[str, User] = field(default_factory=dict)
    _serial: int = 0

    @classmethod
    def start(cls) -> Environment:
        work = Path(tempfile.mkdtemp(prefix="mbb-work-", dir="/tmp"))
        work.chmod(0o755)
        certs = mailservers.Certificates.make(work)
        dovecot = mailservers.Dovecot(certs)
        try:
            dovecot.start()
            smtp = mailservers.SmtpSink(certs, work)
        except BaseException:
            dovecot.stop()
            shutil.rmtree(work, ignore_errors=True)
            raise
        os.environ[PASSWORD_ENV] = mailservers.PASSWORD
        directory = work / "directory.csv"
        directory.write_text(_directory_csv(), encoding="utf-8")
        return cls(work, certs, dovecot, smtp, directory)

    def close(self) -> None:
        self.smtp.stop()
        self.dovecot.stop()
        shutil.rmtree(self.work, ignore_errors=True)

    # mailboxes ----------------------------------------------------------------------------

    def add_user(self, name: str, size: int, *, linkedin_every: int = 20) -> User:
        """A user whose INBOX holds ``size`` messages (1 in ``linkedin_every`` LinkedIn's),
        written as files and then indexed by Dovecot (without fsync: filling only)."""
        path = self.dovecot.add_user(name)
        a = self.dovecot.accounts
        user = User(name, corpus.Maildir(path, a.mail_uid, a.mail_gid))
        if size:
            user.size = user.maildir.fill(corpus.mixed(size, linkedin_every=linkedin_every))
        # Dovecot reads the maildir, assigns UIDs and writes its index; the search caches the
        # From headers that imapfilter's search needs, as a running mailbox would have them.
        self.dovecot.doveadm("index", "-u", name, "INBOX", fast=True)
        self.dovecot.doveadm("search", "-u", name, "mailbox", "INBOX", "FROM", "linkedin.com",
                             fast=True)
        self.users[name] = user
        return user

    def connect(self, user: str) -> IMAPClient:
        """A raw imapclient connection, logged in, over verified TLS (the baselines' client)."""
        client = IMAPClient(mailservers.HOST, self.dovecot.port, ssl=True,
                            ssl_context=mailservers.client_tls(self.certs.ca_file), timeout=60)
        client.login(user, mailservers.PASSWORD)
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
        self._serial += 1
        name = f"{user}-{self._serial}"
        policy = {"look_back_days": 0, **policy}
        policy_lines = "".join(f"{key} = {_toml(value)}\n" for key, value in policy.items())
        text = f"""\
[counselor]
name = {_toml(COUNSELOR["name"])}
email = {_toml(COUNSELOR["email"])}
confidential_contact = {_toml(COUNSELOR["confidential_contact"])}

[imap]
host = "{mailservers.HOST}"
port = {self.dovecot.port}
username = "{user}"
password_env = "{PASSWORD_ENV}"
security = "tls"
ca_file = "{self.certs.ca_file}"

[smtp]
host = "{mailservers.HOST}"
port = {self.smtp.port}
security = "tls"
ca_file = "{self.certs.ca_file}"

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
