"""Real mail servers on loopback for the integration tests.

- ``Dovecot``: a private Dovecot instance (its own config, state, log and maildirs) with an implicit
  TLS port and a plain port offering STARTTLS; each user added while it runs gets a passwd-file.
- ``SmtpServer``: an aiosmtpd server that records every message and can be told to answer a given
  code at RCPT or at the end of DATA.
- ``SilentServer``: a port that accepts connections and never says a word.
- ``ImapWithoutStarttls``: an IMAP greeting that offers no STARTTLS, recording what a client sends.

``tests/conftest.py`` turns these into fixtures; the logic lives here so the fixtures stay short.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import grp
import itertools
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from imapclient import IMAPClient
from pydantic import SecretStr

from modbot.config import ImapSettings, SmtpSettings

HOST = "127.0.0.1"
CERT_NAMES = ("127.0.0.1", "localhost")
DOVECOT_ENV = "MODBOT_TEST_DOVECOT"
DOVECOT_CANDIDATES = ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot")
MAIL_USER = "modbot-test"
# Not $TMPDIR: Dovecot's mail processes must traverse every parent directory, and base_dir must
# stay short; /tmp is world-traversable and short on every Linux system.
INSTANCE_PARENT = Path("/tmp")  # noqa: S108
INSTANCE_PREFIX = "mbdc-"
START_TIMEOUT = 5.0
CLIENT_TIMEOUT = 5.0


class ServerUnavailable(Exception):
    """A test server could not be found or started; the message says why."""


def unavailable(reason: str) -> NoReturn:
    """Fail the test when running in CI (``$CI`` set), otherwise skip it, giving ``reason``."""
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def free_port(host: str = HOST) -> int:
    """A port that was free a moment ago (another process may still take it: callers retry)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def server_ssl_context(cert: trustme.LeafCert) -> ssl.SSLContext:
    """A server-side context presenting ``cert``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    return context


def _die_with_parent() -> None:
    """Ask the kernel to send SIGTERM to this child when the test process dies (Linux only)."""
    pr_set_pdeathsig = 1
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


# --------------------------------------------------------------------------------------------
# Dovecot


_DOVECOT_CONF = """\
# A private Dovecot for the modbot integration tests; nothing here is for production.
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = {host}
ssl = yes
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = plain login
# Wrong-password tests must not wait the default 2 s.
auth_failure_delay = 0
# One passwd-file per user: Dovecot checks a passwd-file for changes at most once a second, but
# opens a file it has not seen before at once, so a user added mid-run can log in immediately.
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
mail_max_userip_connections = 200
default_login_user = {login_user}
default_internal_user = {internal_user}
default_internal_group = {internal_group}
shutdown_clients = yes
service imap-login {{
  chroot =
  inet_listener imap {{
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = {imaps_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
  # Unreachable on purpose: without it the auth process keeps no per-IP penalty, which would
  # otherwise delay every login from 127.0.0.1 by up to 15 s after one wrong-password test.
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service ipc {{
  chroot =
}}
"""


@dataclass(frozen=True)
class _Accounts:
    """Who Dovecot's processes run as, and who owns the mail."""

    mail_uid: int
    mail_gid: int
    login_user: str
    internal_user: str
    internal_group: str


def find_dovecot() -> str:
    """The Dovecot binary (``$MODBOT_TEST_DOVECOT`` if set); ``ServerUnavailable`` if missing."""
    chosen = os.environ.get(DOVECOT_ENV)
    candidates = (chosen,) if chosen else (*DOVECOT_CANDIDATES, shutil.which("dovecot"))
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    looked = chosen or DOVECOT_CANDIDATES[0]
    raise ServerUnavailable(
        f"Dovecot is not installed (looked for {looked}); install dovecot-imapd or set "
        f"{DOVECOT_ENV}"
    )


def _accounts() -> _Accounts:
    """As root: mail owned by a non-root user, Dovecot's own users for login and internal work.

    As an ordinary user: everything runs as that user.
    """
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid())
        return _Accounts(me.pw_uid, me.pw_gid, me.pw_name, me.pw_name,
                         grp.getgrgid(os.getegid()).gr_name)
    for name in ("dovenull", "dovecot"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            raise ServerUnavailable(
                f"the system user {name!r} that Dovecot runs as is missing"
            ) from None
    try:
        mail = pwd.getpwnam(MAIL_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home",
             "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", MAIL_USER],
            capture_output=True, check=False, timeout=30,
        )
        try:
            mail = pwd.getpwnam(MAIL_USER)
        except KeyError:
            mail = pwd.getpwnam("nobody")
    dovecot_group = grp.getgrgid(pwd.getpwnam("dovecot").pw_gid).gr_name
    return _Accounts(mail.pw_uid, mail.pw_gid, "dovenull", "dovecot", dovecot_group)


@dataclass(frozen=True)
class ImapUser:
    """A mailbox in the test Dovecot, with direct IMAP access that does not go through modbot."""

    host: str
    port: int  # implicit TLS
    starttls_port: int  # plain, offering STARTTLS
    username: str
    password: str
    ssl_context: ssl.SSLContext = field(repr=False)

    def imap_settings(self, *, security: Literal["tls", "starttls"] = "tls",
                      **changes: Any) -> ImapSettings:
        """Settings for modbot's Mailbox to reach this mailbox; ``changes`` override fields."""
        values: dict[str, Any] = {
            "host": self.host,
            "port": self.port if security == "tls" else self.starttls_port,
            "security": security,
            "username": self.username,
            "password": SecretStr(self.password),
            "timeout_seconds": CLIENT_TIMEOUT,
        }
        values.update(changes)
        return ImapSettings(**values)

    def connect(self) -> IMAPClient:
        """A logged-in imapclient connection over verified TLS (close it with ``logout``)."""
        client = IMAPClient(self.host, self.port, ssl=True, ssl_context=self.ssl_context,
                            timeout=CLIENT_TIMEOUT)
        try:
            client.login(self.username, self.password)
        except BaseException:
            client.shutdown()
            raise
        return client

    def append(self, folder: str, raw: bytes, flags: Sequence[str] = ()) -> int:
        """Store ``raw`` in ``folder`` (created if missing) and return its UID."""
        with self.connect() as client:
            if not client.folder_exists(folder):
                client.create_folder(folder)
            response = client.append(folder, raw, flags=tuple(flags))
        match = re.search(rb"APPENDUID \d+ (\d+)", response)
        if match is None:
            raise AssertionError("the server did not report the UID of the appended message")
        return int(match.group(1))

    def flags(self, folder: str) -> dict[int, tuple[str, ...]]:
        """Every message's stored flags in ``folder``, read without changing them.

        ``\\Recent`` is left out: it belongs to a connection, not to the message.
        """
        with self.connect() as client:
            client.select_folder(folder, readonly=True)
            answer = client.get_flags(client.search("ALL"))
        return {
            uid: tuple(sorted(f.decode() for f in flags if f != b"\\Recent"))
            for uid, flags in answer.items()
        }

    def messages(self, folder: str) -> list[bytes]:
        """The raw bytes of every message in ``folder``, in UID order; empty if it is missing."""
        with self.connect() as client:
            if not client.folder_exists(folder):
                return []
            client.select_folder(folder, readonly=True)
            answer = client.fetch(client.search("ALL"), ["BODY.PEEK[]"])
        return [answer[uid][b"BODY[]"] for uid in sorted(answer)]


@dataclass
class Dovecot:
    """A running private Dovecot; stop it with ``stop()``."""

    root: Path
    process: subprocess.Popen[bytes]
    imaps_port: int
    imap_port: int
    client_context: ssl.SSLContext = field(repr=False)
    host: str = HOST
    _serial: Iterator[int] = field(default_factory=lambda: itertools.count(1), repr=False)

    def add_user(self) -> ImapUser:
        """Add a fresh user with its own passwd-file; it can log in at once."""
        username = f"user{next(self._serial)}-{secrets.token_hex(3)}"
        password = secrets.token_urlsafe(12)
        passwd = self.root / "users" / username
        passwd.write_text(f"{username}:{{PLAIN}}{password}\n", encoding="ascii")
        passwd.chmod(0o644)
        return ImapUser(self.host, self.imaps_port, self.imap_port, username, password,
                        self.client_context)

    def log_tail(self, lines: int = 20) -> str:
        """The last lines Dovecot wrote, for failure messages."""
        text = ""
        for name in ("stderr.log", "dovecot.log"):
            with contextlib.suppress(OSError):
                text += (self.root / name).read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Stop the server and remove its directory."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        shutil.rmtree(self.root, ignore_errors=True)


def _remove_stale_instances(min_age: float = 300.0) -> None:
    """Remove instance directories that a killed test run left behind (their master is gone)."""
    for root in INSTANCE_PARENT.glob(f"{INSTANCE_PREFIX}*"):
        try:
            if time.time() - root.stat().st_mtime < min_age:
                continue
            pid = int((root / "run" / "master.pid").read_text().strip() or 0)
        except (OSError, ValueError):
            pid = 0
        if pid:
            try:
                os.kill(pid, 0)
                continue  # still running: another test run's server
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
        shutil.rmtree(root, ignore_errors=True)


def _greets(host: str, port: int) -> bool:
    """True once the plain IMAP port answers with an ``* OK`` greeting."""
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            return sock.recv(64).startswith(b"* OK")
    except OSError:
        return False


def start_dovecot(cert: trustme.LeafCert, client_context: ssl.SSLContext,
                  attempts: int = 5) -> Dovecot:
    """Start a private Dovecot on free loopback ports; raise ``ServerUnavailable`` on failure.

    A port found free can be taken before Dovecot binds it, so a failed bind is retried with new
    ports. The instance lives in a fresh 0755 directory under /tmp: the mail processes run as a
    non-root user and must traverse every parent directory (pytest's own tmp dirs are 0700), and
    ``base_dir`` must stay short (socket paths of ~105 characters fail).
    """
    binary = find_dovecot()
    accounts = _accounts()
    _remove_stale_instances()
    last_problem = "no attempt was made"
    for _ in range(attempts):
        root = Path(tempfile.mkdtemp(prefix=INSTANCE_PREFIX, dir=INSTANCE_PARENT))
        root.chmod(0o755)
        cert.cert_chain_pems[0].write_to_path(root / "cert.pem")
        key = root / "key.pem"
        cert.private_key_pem.write_to_path(key)
        key.chmod(0o600)
        (root / "users").mkdir(mode=0o755)
        home = root / "home"
        home.mkdir(mode=0o755)
        os.chown(home, accounts.mail_uid, accounts.mail_gid)
        imap_port, imaps_port = free_port(), free_port()
        while imaps_port == imap_port:
            imaps_port = free_port()
        config = root / "dovecot.conf"
        config.write_text(_DOVECOT_CONF.format(
            root=root, host=HOST, uid=accounts.mail_uid, gid=accounts.mail_gid,
            login_user=accounts.login_user, internal_user=accounts.internal_user,
            internal_group=accounts.internal_group, imap_port=imap_port, imaps_port=imaps_port,
        ))
        with (root / "stderr.log").open("wb") as stderr:
            process = subprocess.Popen(
                [binary, "-F", "-c", str(config)],
                stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr,
                preexec_fn=_die_with_parent,
            )
        server = Dovecot(root, process, imaps_port, imap_port, client_context)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and process.poll() is None:
            if _greets(HOST, imap_port):
                return server
            time.sleep(0.01)
        tail = server.log_tail()
        server.stop()
        if "Address already in use" in tail:
            last_problem = "its ports were taken"
            continue
        last_problem = f"it said: {tail.strip() or '(nothing)'}"
        break
    raise ServerUnavailable(f"Dovecot did not start; {last_problem}")


# --------------------------------------------------------------------------------------------
# SMTP


@dataclass(frozen=True)
class Received:
    """One message an SmtpServer accepted."""

    sender: str
    recipients: tuple[str, ...]
    data: bytes
    login: str | None  # the AUTH user name, if the client logged in


SmtpMode = Literal["tls", "starttls", "plain"]


class SmtpServer:
    """An aiosmtpd server on 127.0.0.1 that records what it receives.

    ``mode`` is ``tls`` (implicit TLS), ``starttls`` (plain port that requires STARTTLS) or
    ``plain`` (no TLS at all, yet AUTH offered in clear text: the stripped-STARTTLS attack).
    It accepts AUTH PLAIN / LOGIN for ``username`` / ``password``; logging in is optional.
    A test sets ``rcpt_reply`` or ``data_reply`` (e.g. ``"450 4.2.1 Try later"``) to make it
    answer that at RCPT or at the end of DATA, or ``drop_after_data`` to have it keep the message
    and hang up before answering.
    """

    username = "modbot"
    password = "smtp-secret-4711"

    def __init__(self, mode: SmtpMode, cert: trustme.LeafCert) -> None:
        self.mode: SmtpMode = mode
        self.host = HOST
        self.port = 0
        self.messages: list[Received] = []
        self.auth_attempts: list[str] = []
        self.rcpt_reply: str | None = None
        self.data_reply: str | None = None
        self.drop_after_data = False
        self._cert = cert
        self._controller: Controller | None = None

    # aiosmtpd hooks --------------------------------------------------------------------------

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session,
                          envelope: Envelope) -> str:
        if self.data_reply:
            return self.data_reply
        content = envelope.original_content or b""
        login = session.auth_data if isinstance(session.auth_data, str) else None
        self.messages.append(
            Received(envelope.mail_from or "", tuple(envelope.rcpt_tos), content, login)
        )
        if self.drop_after_data and isinstance(server.transport, asyncio.Transport):
            server.transport.abort()
        return "250 2.0.0 Message accepted"

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope,
                      mechanism: str, auth_data: Any) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode("utf-8", "replace")
        self.auth_attempts.append(login)
        ok = (secrets.compare_digest(auth_data.login, self.username.encode())
              and secrets.compare_digest(auth_data.password, self.password.encode()))
        return AuthResult(success=ok, handled=False, auth_data=login if ok else None)

    # life cycle -------------------------------------------------------------------------------

    def start(self, attempts: int = 5) -> SmtpServer:
        tls_context = server_ssl_context(self._cert)
        options: dict[str, Any] = {
            "authenticator": self._authenticate,
            "server_hostname": "localhost",  # skips a slow reverse lookup of the host name
            "ready_timeout": START_TIMEOUT,
        }
        if self.mode == "tls":
            # aiosmtpd counts only STARTTLS as TLS for auth_require_tls; with implicit TLS the
            # whole connection is encrypted from the first byte, so the check is left off.
            options.update(ssl_context=tls_context, auth_require_tls=False)
        elif self.mode == "starttls":
            options.update(tls_context=tls_context, require_starttls=True, auth_require_tls=True)
        else:
            options.update(auth_require_tls=False)
        for attempt in range(attempts):
            self.port = free_port()
            controller = Controller(self, hostname=self.host, port=self.port, **options)
            try:
                controller.start()
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or attempt == attempts - 1:
                    raise
                continue
            self._controller = controller
            return self
        raise ServerUnavailable("aiosmtpd found no free port")  # pragma: no cover

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def smtp_settings(self, *, login: bool = True, **changes: Any) -> SmtpSettings:
        """Settings for modbot's Sender to reach this server; ``changes`` override fields."""
        security = {"tls": "tls", "starttls": "starttls", "plain": "starttls"}[self.mode]
        values: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "security": security,
            "timeout_seconds": CLIENT_TIMEOUT,
        }
        if login:
            values.update(username=self.username, password=SecretStr(self.password))
        values.update(changes)
        return SmtpSettings(**values)


# --------------------------------------------------------------------------------------------
# A stalled server


class SilentServer:
    """A listening port that completes the TCP handshake and then never writes a byte.

    Connections wait in the kernel's backlog and are never accepted: to a client this is a server
    that hangs right after connecting, before its greeting or TLS handshake.
    """

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind((HOST, 0))
        self._sock.listen(16)
        self.host = HOST
        self.port = int(self._sock.getsockname()[1])

    def close(self) -> None:
        self._sock.close()



class ImapWithoutStarttls:
    """An IMAP server for one client that offers no STARTTLS and records every byte it receives.

    It answers CAPABILITY (without STARTTLS) and LOGOUT, and ``BAD`` to anything else: a careful
    client hangs up before its login, a careless one sends LOGIN in clear text.
    """

    CAPABILITY = b"IMAP4rev1 AUTH=PLAIN LOGIN"

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind((HOST, 0))
        self._sock.listen(1)
        self._sock.settimeout(CLIENT_TIMEOUT)
        self.host = HOST
        self.port = int(self._sock.getsockname()[1])
        self.received = bytearray()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self._sock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(CLIENT_TIMEOUT)
            try:
                conn.sendall(b"* OK [CAPABILITY " + self.CAPABILITY + b"] ready\r\n")
                self._converse(conn)
            except OSError:
                pass

    def _converse(self, conn: socket.socket) -> None:
        pending = b""
        while chunk := conn.recv(4096):
            self.received += chunk
            pending += chunk
            while b"\r\n" in pending:
                line, pending = pending.split(b"\r\n", 1)
                tag, _, rest = line.partition(b" ")
                command = rest.split(b" ", 1)[0].upper()
                if command == b"CAPABILITY":
                    conn.sendall(b"* CAPABILITY " + self.CAPABILITY + b"\r\n"
                                 + tag + b" OK CAPABILITY completed\r\n")
                elif command == b"LOGOUT":
                    conn.sendall(b"* BYE logging out\r\n" + tag + b" OK LOGOUT completed\r\n")
                    return
                else:
                    conn.sendall(tag + b" BAD not here\r\n")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes a thread still waiting in accept()
        self._sock.close()
        self._thread.join(timeout=CLIENT_TIMEOUT)
