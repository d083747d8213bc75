"""Faults for the reliability tests (``tests/reliability/``) and ``bench/soak.py``.

- ``invitation`` and ``Crowd``: genuine-looking LinkedIn invitations from distinct directory people;
- ``write_config``, ``settings_for``, ``context_for`` and ``run_poll``: a configuration for the
  real servers (made by ``support.configs``), and one poll in a child process that can be killed
  with SIGKILL at a named step (``tests/support/poll_driver.py``);
- ``KillingSmtpServer``: an aiosmtpd server that kills the polling process in the middle of DATA;
- ``CutProxy``: a loopback TCP proxy that closes both sides after a given number of bytes;
- ``TlsTerminator``: a loopback TLS server with any certificate that forwards the plaintext to a
  real server and records every byte it received;
- ``hold_write_lock``: another process holding SQLite's write lock.

Real servers and real processes only; nothing here replaces a library.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import os
import random
import select
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import trustme
from aiosmtpd.smtp import SMTP, Envelope, Session
from pydantic import SecretStr

from modbot.config import Account
from modbot.poll import Context
from support import configs, servers

# Named here too, as the reliability tests and bench/soak.py have always read them.
from support.configs import CONTACT as CONTACT
from support.configs import COUNSELOR as COUNSELOR
from support.configs import DIRECTORY, TRUSTED

HERE = Path(__file__).parent
DATA = HERE.parent / "data"
DRIVER = HERE / "poll_driver.py"
AUTH_RESULTS = (
    f"{TRUSTED}; dkim=pass header.d=linkedin.com header.s=d2048-202308-00; "
    "spf=pass smtp.mailfrom=s-1@bounce.linkedin.com; "
    "dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from=linkedin.com"
)
# The signature the trusted server's verdict reports on (not verified here).
SIGNATURE = ("v=1; a=rsa-sha256; c=relaxed/relaxed; d=linkedin.com; s=d2048-202308-00; "
             "h=From:Subject:MIME-Version:Content-Type:To:Date:X-LinkedIn-Class:"
             "X-LinkedIn-Template; bh=Zml4dHVyZQ==; b=Zml4dHVyZSBzaWduYXR1cmU=")
# The fixtures of tests/data that the end-to-end tests know: two replies, one hold, one spoof,
# and one message that is not LinkedIn's.
JORDAN = "invitation_current_jordan_rivera.eml"
SAM = "message_sam_okafor_relay.eml"
PRIYA = "invitation_current_priya_natarajan.eml"
SPOOF = "spoof_forged_authres_untrusted.eml"
NEWSLETTER = "not_linkedin_newsletter.eml"


def fixture(name: str) -> bytes:
    return (DATA / name).read_bytes()


# --------------------------------------------------------------------------------------------
# Mail


@dataclass(frozen=True)
class Person:
    name: str
    slug: str
    email: str
    invitation_id: str


def invitation(person: Person, *, serial: int = 0) -> bytes:
    """A current-template LinkedIn invitation from ``person``, authenticated by the trusted MX."""
    message = EmailMessage()
    message["Return-Path"] = "<s-1@bounce.linkedin.com>"
    message["Authentication-Results"] = AUTH_RESULTS
    message["From"] = Address(person.name, addr_spec="invitations@linkedin.com")
    message["Message-ID"] = f"<{serial}.{person.invitation_id}@ltx1-app1.prod.linkedin.com>"
    message["Subject"] = "Morgan, please add me to your LinkedIn network"
    message["To"] = Address("Morgan Lee", addr_spec="morgan.lee@counsel.example.edu")
    message["Date"] = "Mon, 3 Mar 2025 14:02:11 +0000"
    message["X-LinkedIn-Class"] = "EMAIL-DEFAULT"
    message["X-LinkedIn-Template"] = "email_m2m_invite_single_01"
    message["Feedback-ID"] = "email_m2m_invite_single_01:linkedin"
    accept = ("https://www.linkedin.com/comm/mynetwork/invite-accept/invitationId/"
              f"{person.invitation_id}/?sharedKey=k1")
    profile = f"https://www.linkedin.com/comm/in/{person.slug}?midToken=t1"
    message.set_content(
        f"Hi Morgan,\nI’d like to join your LinkedIn network.\n\n{person.name}\nStudent\n\n"
        f"Accept: {accept}\n\nView {person.name}’s profile: {profile}\n"
    )
    message.add_alternative(
        f'<html><body><p>Hi Morgan,</p><p><a href="{html.escape(profile)}">'
        f'{html.escape(person.name)}</a></p><a href="{html.escape(accept)}">Accept</a>'
        "</body></html>",
        subtype="html",
    )
    # Folded as a signer folds it; the email package would make encoded words of its tags.
    return f"DKIM-Signature: {SIGNATURE}\n".replace("; ", ";\n\t").encode() + bytes(message)


class Crowd:
    """Distinct people of the campus directory, each with one invitation of their own."""

    def __init__(self, size: int, *, seed: int = 1) -> None:
        rng = random.Random(seed)
        first = ["Avery", "Blake", "Casey", "Devon", "Emery", "Finley", "Harper", "Jules",
                 "Kai", "Logan", "Morgan", "Noor", "Oakley", "Parker", "Quinn", "Reese"]
        self.people = [
            Person(name=f"{rng.choice(first)} Tester{i:05d}", slug=f"tester-{i:05d}",
                   email=f"t{i:05d}@students.example.edu",
                   invitation_id=str(7_100_000_000_000_000_000 + i))
            for i in range(size)
        ]

    def directory_csv(self, extra: str = "") -> str:
        lines = [DIRECTORY.rstrip("\n")]
        lines += [f"{p.name},{p.email},https://www.linkedin.com/in/{p.slug}" for p in self.people]
        return "\n".join(lines) + "\n" + extra

    def messages(self) -> list[bytes]:
        return [invitation(p, serial=i) for i, p in enumerate(self.people)]


def append_many(user: servers.ImapUser, folder: str, messages: Sequence[bytes]) -> None:
    """Store ``messages`` with MULTIAPPEND (RFC 3502): one command, one transaction per 200."""
    with user.connect() as client:
        if not client.folder_exists(folder):
            client.create_folder(folder)
        for start in range(0, len(messages), 200):
            client.multiappend(folder, list(messages[start:start + 200]))


def recipients_count(smtp: servers.SmtpServer) -> Counter[str]:
    """How many messages the SMTP server accepted for each recipient."""
    return Counter(r for m in smtp.messages for r in m.recipients)


# --------------------------------------------------------------------------------------------
# Configuration and the poll in a child process


def settings_for(tmp_path: Path, imap_user: servers.ImapUser, smtp: servers.SmtpServer,
                 ca_file: Path, *, directory: str = DIRECTORY, imap: dict[str, Any] | None = None,
                 smtp_changes: dict[str, Any] | None = None, **policy: Any) -> Account:
    """Settings for an in-process poll of ``imap_user`` answering through ``smtp``."""
    return configs.account(
        tmp_path,
        imap_user.imap_settings(**{"sent_folder": "Sent", "ca_file": ca_file, **(imap or {})}),
        smtp.smtp_settings(**{"ca_file": ca_file, **(smtp_changes or {})}),
        people=directory, policy=policy)


def context_for(tmp_path: Path, imap_user: servers.ImapUser, smtp: servers.SmtpServer,
                ca_file: Path, **changes: Any) -> Context:
    """A poll context for ``settings_for`` (``changes`` as there), with no DKIM lookups over
    DNS; the caller closes its store."""
    return Context.build(settings_for(tmp_path, imap_user, smtp, ca_file, **changes),
                         dkim_lookup=None)


def write_config(tmp_path: Path, imap_user: servers.ImapUser, smtp: servers.SmtpServer,
                 ca_file: Path, *, directory: str = DIRECTORY, sent_folder: str | None = "Sent",
                 imap_port: int | None = None, timeout: float = 5.0, level: str = "INFO",
                 smtp_login: bool = False) -> Path:
    """A TOML configuration for ``modbot`` or ``poll_driver.py``; passwords from the env."""
    (tmp_path / "directory.csv").write_text(directory, encoding="utf-8")
    login = {"username": "modbot", "password_env": "MODBOT_SMTP_PASSWORD"} if smtp_login else {}
    return configs.write_config(tmp_path, configs.served_text(
        imap_user, smtp, ca_file,
        imap={"port": imap_port or imap_user.port, "timeout_seconds": timeout,
              "sent_folder": sent_folder},
        smtp={"timeout_seconds": timeout, **login},
        database={"url": configs.sqlite_url(tmp_path / "modbot.db")},
        policy={"mode": "auto", "trusted_authserv_ids": [TRUSTED]},
        directory={"csv": tmp_path / "directory.csv"},
        logging={"level": level}))


def run_poll(config: Path, now: datetime, password: str, *, crash_at: str | None = None,
             occurrence: int = 1, pid_file: Path | None = None, debug: bool = False,
             extra_env: dict[str, str] | None = None,
             timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """One poll in a child process; with ``crash_at`` it SIGKILLs itself at that step."""
    command = [sys.executable, str(DRIVER), str(config), now.isoformat()]
    if crash_at:
        command += ["--crash-at", crash_at, "--occurrence", str(occurrence)]
    if pid_file:
        command += ["--pid-file", str(pid_file)]
    if debug:
        command.append("--debug")
    env = {**os.environ, "MODBOT_IMAP_PASSWORD": password,
           "MODBOT_SMTP_PASSWORD": servers.SmtpServer.password, **(extra_env or {})}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout,
                          check=False, cwd=HERE.parents[1])


def killed(result: subprocess.CompletedProcess[str]) -> bool:
    return result.returncode == -signal.SIGKILL


# --------------------------------------------------------------------------------------------
# Servers that misbehave


class KillingSmtpServer(servers.SmtpServer):
    """An SMTP server that counts every RCPT and DATA it is given and, once armed with
    ``pid_file``, SIGKILLs the client process while it waits for DATA's answer: the server keeps
    the message, the client never learns it was accepted."""

    def __init__(self, mode: servers.SmtpMode, cert: trustme.LeafCert) -> None:
        super().__init__(mode, cert)
        self.pid_file: Path | None = None
        self.occurrence = 1  # kill during the N-th message from now on
        self.rcpt_calls = 0
        self.data_calls = 0
        self.stall_data: float = 0.0  # seconds to sit on a message before answering DATA

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        self.rcpt_calls += 1
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.data_calls += 1
        if self.stall_data:
            await asyncio.sleep(self.stall_data)
        answer = await super().handle_DATA(server, session, envelope)
        if self.pid_file is not None:
            self.occurrence -= 1
        pid_file = self.pid_file if self.occurrence == 0 else None
        if pid_file is not None:
            self.pid_file = None
            deadline = time.monotonic() + 5
            while not pid_file.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
            time.sleep(0.05)  # let the kill land before the answer could
        return answer


class CutProxy(servers.Listener):
    """A loopback TCP proxy to ``target``; after ``cut_after`` bytes (both ways together) it
    closes both connections at once, or with ``stall=True`` it goes silent and holds them open.
    TLS passes through as opaque bytes.

    ``cut_after=None`` forwards everything; ``total`` counts the bytes of the last connection.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.cut_after: int | None = None
        self.stall = False
        self.total = 0
        self.cuts = 0
        super().__init__()

    def handle(self, client: socket.socket) -> None:
        budget = self.cut_after
        moved = 0
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        with client, upstream:
            pairs = {client: upstream, upstream: client}
            while True:
                ready, _, _ = select.select(list(pairs), [], [], 10)
                if not ready:
                    break
                for sock in ready:
                    try:
                        data = sock.recv(16384)
                    except OSError:
                        data = b""
                    if not data:
                        self.total = moved
                        return
                    if budget is not None and moved + len(data) >= budget:
                        with contextlib.suppress(OSError):
                            pairs[sock].sendall(data[:max(budget - moved, 0)])
                        self.total = moved + len(data)
                        self.cuts += 1
                        while self.stall and not self._closed:
                            time.sleep(0.05)
                        for each in (client, upstream):
                            with contextlib.suppress(OSError):
                                each.shutdown(socket.SHUT_RDWR)
                        return
                    moved += len(data)
                    try:
                        pairs[sock].sendall(data)
                    except OSError:
                        self.total = moved
                        return


class TlsTerminator(servers.Listener):
    """A loopback TLS server presenting ``cert`` (any certificate, good or bad) that forwards the
    decrypted bytes to a plain ``target`` and back.

    ``raw`` records every byte that arrived on the wire, ``plaintext`` every byte after TLS, and
    ``handshakes`` counts completed TLS handshakes: a client that refuses the certificate leaves
    ``plaintext`` empty. Without ``cert`` no TLS is spoken at all (a plain recording relay).
    """

    def __init__(self, target: tuple[str, int], cert: trustme.LeafCert | None,
                 *, key_and_cert: tuple[bytes, bytes] | None = None) -> None:
        self.target = target
        self.raw = bytearray()
        self.plaintext = bytearray()
        self.handshakes = 0
        self._context: ssl.SSLContext | None = None
        if cert is not None:
            self._context = servers.server_ssl_context(cert)
        elif key_and_cert is not None:
            self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            with _pem_files(*key_and_cert) as (key_path, cert_path):
                self._context.load_cert_chain(cert_path, key_path)
        super().__init__()

    def handle(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        with conn:
            tls: ssl.SSLObject | None = None
            incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
            if self._context is not None:
                tls = self._context.wrap_bio(incoming, outgoing, server_side=True)
                if not self._handshake(conn, tls, incoming, outgoing):
                    return
                self.handshakes += 1
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                return
            with upstream:
                self._relay(conn, upstream, tls, incoming, outgoing)

    def _handshake(self, conn: socket.socket, tls: ssl.SSLObject, incoming: ssl.MemoryBIO,
                   outgoing: ssl.MemoryBIO) -> bool:
        while True:
            try:
                tls.do_handshake()
                conn.sendall(outgoing.read())
                return True
            except ssl.SSLWantReadError:
                conn.sendall(outgoing.read())
                try:
                    data = conn.recv(16384)
                except OSError:
                    return False
                if not data:
                    return False
                self.raw += data
                incoming.write(data)
            except (ssl.SSLError, OSError):
                with contextlib.suppress(OSError):
                    conn.sendall(outgoing.read())
                return False

    def _relay(self, conn: socket.socket, upstream: socket.socket, tls: ssl.SSLObject | None,
               incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO) -> None:
        while True:
            ready, _, _ = select.select([conn, upstream], [], [], 10)
            if not ready:
                return
            for sock in ready:
                try:
                    data = sock.recv(16384)
                except OSError:
                    return
                if not data:
                    return
                if sock is conn:
                    self.raw += data
                    if tls is None:
                        clear = data
                    else:
                        incoming.write(data)
                        clear = b""
                        with contextlib.suppress(ssl.SSLWantReadError):
                            while chunk := tls.read(16384):
                                clear += chunk
                    self.plaintext += clear
                    if clear:
                        upstream.sendall(clear)
                else:
                    if tls is None:
                        conn.sendall(data)
                    else:
                        tls.write(data)
                        conn.sendall(outgoing.read())


@contextlib.contextmanager
def _pem_files(key: bytes, cert: bytes) -> Iterator[tuple[str, str]]:
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        key_path, cert_path = Path(directory) / "key.pem", Path(directory) / "cert.pem"
        key_path.write_bytes(key)
        cert_path.write_bytes(cert)
        yield str(key_path), str(cert_path)


def self_signed(*names: str) -> tuple[bytes, bytes]:
    """A self-signed certificate for ``names`` (no CA at all), as (key PEM, certificate PEM)."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    alternatives: list[x509.GeneralName] = []
    for name in names:
        try:
            alternatives.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alternatives.append(x509.DNSName(name))
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


# --------------------------------------------------------------------------------------------
# The database


_LOCKER = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
connection.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()
connection.execute("ROLLBACK")
"""


@contextlib.contextmanager
def hold_write_lock(database: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process that holds SQLite's write lock on ``database`` until the block ends."""
    process = subprocess.Popen([sys.executable, "-c", _LOCKER, str(database)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "locked"
        yield process
    finally:
        if process.stdin is not None:
            process.stdin.close()
        process.wait(timeout=10)


def smtp_password() -> SecretStr:
    return SecretStr(servers.SmtpServer.password)
