"""Real mail servers on loopback for the integration tests and the benchmark.

- ``Dovecot``: a private Dovecot instance (its own config, state, log and maildirs) with an implicit
  TLS port and a plain port offering STARTTLS, and on request an LMTP port for an MTA to deliver
  to; each user added while it runs gets a passwd-file.
- ``SmtpServer``: an aiosmtpd server that records every message and can be told to answer a given
  code at RCPT or at the end of DATA.
- ``SilentServer``: a port that accepts connections and never says a word.
- ``ImapWithoutStarttls``: an IMAP greeting that offers no STARTTLS, recording what a client sends.

``tests/conftest.py`` turns these into fixtures; the logic lives here so the fixtures stay short.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import errno
import functools
import grp
import hashlib
import itertools
import json
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
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal, NoReturn, Protocol

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from imapclient import IMAPClient
from pydantic import SecretStr

from modbot.config import ImapSettings, OAuth2Settings, SmtpSettings

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


def stop_process(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM,
                 timeout: float = 5) -> None:
    """Ask a test server to stop with ``sig``; kill it if it has not within ``timeout``."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def log_tail(*paths: Path, lines: int = 20) -> str:
    """The last ``lines`` of the logs at ``paths`` read one after another, for failure messages;
    a log not written yet reads as empty."""
    text = ""
    for path in paths:
        with contextlib.suppress(OSError):
            text += path.read_text(errors="replace")
    return "\n".join(text.splitlines()[-lines:])


class _Started(Protocol):
    def log_tail(self) -> str: ...

    def stop(self) -> None: ...


PORTS_TAKEN = "its ports were taken"


def await_start(server: _Started, process: subprocess.Popen[bytes],
                ready: Callable[[], bool]) -> str | None:
    """Wait up to START_TIMEOUT for a just-started ``server`` to be ``ready``: None once it is;
    otherwise stop it and say why it failed, ``PORTS_TAKEN`` when another process had a port
    (worth another attempt on new ports)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        if ready():
            return None
        time.sleep(0.01)
    tail = server.log_tail()
    server.stop()
    if "Address already in use" in tail:
        return PORTS_TAKEN
    return f"it said: {tail.strip() or '(nothing)'}"


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
# One daemon may watch hundreds of inboxes over two connections each, and with implicit TLS every
# connection holds an imap-login process (its TLS proxy) besides its imap process: the default
# limit of 100 processes per service would leave connections beyond the 100th waiting.
default_process_limit = 1000
default_client_limit = 4000
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
# Added by start_dovecot(lmtp_hostname=...): delivery from an MTA (Postfix's lmtp client) on
# loopback. The recipient's local part is the user name, so that user@any.domain reaches the
# mailbox the IMAP login of that user reads.
_DOVECOT_LMTP_CONF = """\
hostname = {hostname}
service lmtp {{
  inet_listener lmtp {{
    address = {host}
    port = {lmtp_port}
  }}
}}
protocol lmtp {{
  auth_username_format = %Ln
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
    lmtp_port: int | None = None  # set when started with an LMTP listener
    _serial: Iterator[int] = field(default_factory=lambda: itertools.count(1), repr=False)

    def add_user(self, username: str | None = None, password: str | None = None) -> ImapUser:
        """Add a user (``username``, or a made-up name) with its own passwd-file; it can log in
        at once. The password is made up unless given."""
        username = username or f"user{next(self._serial)}-{secrets.token_hex(3)}"
        password = password or secrets.token_urlsafe(12)
        passwd = self.root / "users" / username
        passwd.write_text(f"{username}:{{PLAIN}}{password}\n", encoding="ascii")
        passwd.chmod(0o644)
        return ImapUser(self.host, self.imaps_port, self.imap_port, username, password,
                        self.client_context)

    def maildir(self, username: str) -> Path:
        """Create ``username``'s empty maildir, owned by the mail user, for files written
        straight into it as a delivery agent would; return its path."""
        home = self.root / "home"
        owner = home.stat()
        maildir = home / username / "Maildir"
        for path in (maildir.parent, maildir, maildir / "cur", maildir / "new", maildir / "tmp"):
            path.mkdir(mode=0o700, exist_ok=True)
            os.chown(path, owner.st_uid, owner.st_gid)
        return maildir

    def doveadm(self, *args: str, fast: bool = False, timeout: float = 600) -> str:
        """Run ``doveadm`` against this instance and return what it printed; ``fast`` skips
        fsync (for filling a mailbox only, never for a server under test)."""
        command = ["doveadm", "-c", str(self.root / "dovecot.conf")]
        if fast:
            command += ["-o", "mail_fsync=never"]
        result = subprocess.run([*command, *args], capture_output=True, text=True,
                                timeout=timeout, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"doveadm {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def kick(self, user: ImapUser) -> None:
        """Close every connection of ``user`` from the server's side (``doveadm kick``)."""
        self.doveadm("kick", user.username, timeout=30)

    def log_tail(self, lines: int = 20) -> str:
        """The last lines Dovecot wrote, for failure messages."""
        return log_tail(self.root / "stderr.log", self.root / "dovecot.log", lines=lines)

    def stop(self) -> None:
        """Stop the server and remove its directory."""
        stop_process(self.process)
        shutil.rmtree(self.root, ignore_errors=True)


def remove_stale_instances(prefix: str, pid_file: str, min_age: float = 300.0) -> None:
    """Remove ``/tmp/<prefix>*`` instance directories that a killed test run left behind.

    A directory is kept while the process named in its ``pid_file`` (first word) still runs,
    and for ``min_age`` seconds after it was made, so a parallel run is never disturbed.
    """
    for root in INSTANCE_PARENT.glob(f"{prefix}*"):
        try:
            if time.time() - root.stat().st_mtime < min_age:
                continue
            words = (root / pid_file).read_text().split()
            pid = int(words[0]) if words else 0
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
                  attempts: int = 5, *, lmtp_hostname: str | None = None) -> Dovecot:
    """Start a private Dovecot on free loopback ports; raise ``ServerUnavailable`` on failure.

    With ``lmtp_hostname`` it also takes deliveries over LMTP (Debian's dovecot-lmtpd) on a free
    port, naming itself so in the ``Received`` line it adds.

    A port found free can be taken before Dovecot binds it, so a failed bind is retried with new
    ports. The instance lives in a fresh 0755 directory under /tmp: the mail processes run as a
    non-root user and must traverse every parent directory (pytest's own tmp dirs are 0700), and
    ``base_dir`` must stay short (socket paths of ~105 characters fail).
    """
    binary = find_dovecot()
    accounts = _accounts()
    remove_stale_instances(INSTANCE_PREFIX, "run/master.pid")
    last_problem = "no attempt was made"
    for _ in range(attempts):
        root = Path(tempfile.mkdtemp(prefix=INSTANCE_PREFIX, dir=INSTANCE_PARENT))
        root.chmod(0o755)
        cert.cert_chain_pems[0].write_to_path(root / "cert.pem")
        key = root / "key.pem"
        cert.private_key_pem.write_to_path(key)
        key.chmod(0o600)
        # Modes set outright: an in-process `modbot` command may have left the umask at 077.
        (root / "users").mkdir()
        (root / "users").chmod(0o755)
        home = root / "home"
        home.mkdir()
        home.chmod(0o755)
        os.chown(home, accounts.mail_uid, accounts.mail_gid)
        imap_port, imaps_port = free_port(), free_port()
        while imaps_port == imap_port:
            imaps_port = free_port()
        text = _DOVECOT_CONF.format(
            root=root, host=HOST, uid=accounts.mail_uid, gid=accounts.mail_gid,
            login_user=accounts.login_user, internal_user=accounts.internal_user,
            internal_group=accounts.internal_group, imap_port=imap_port, imaps_port=imaps_port,
        )
        lmtp_port = None
        if lmtp_hostname is not None:
            lmtp_port = free_port()
            while lmtp_port in (imap_port, imaps_port):
                lmtp_port = free_port()
            text = text.replace("\nprotocols = imap\n", "\nprotocols = imap lmtp\n")
            if "protocols = imap lmtp" not in text:
                shutil.rmtree(root, ignore_errors=True)
                raise ServerUnavailable("the Dovecot template changed; update start_dovecot")
            text += _DOVECOT_LMTP_CONF.format(hostname=lmtp_hostname, host=HOST,
                                              lmtp_port=lmtp_port)
        config = root / "dovecot.conf"
        config.write_text(text)
        with (root / "stderr.log").open("wb") as stderr:
            process = subprocess.Popen(
                [binary, "-F", "-c", str(config)],
                stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr,
                preexec_fn=_die_with_parent,
            )
        server = Dovecot(root, process, imaps_port, imap_port, client_context,
                         lmtp_port=lmtp_port)
        problem = await_start(server, process, functools.partial(_greets, HOST, imap_port))
        if problem is None:
            return server
        last_problem = problem
        if problem != PORTS_TAKEN:
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
# A stalled server, and the base of the relays and proxies


class Listener:
    """A TCP port on loopback that gives each connection to ``handle`` in a thread of its own:
    what the tests' relays and proxies (``faults.CutProxy``, ``faults.TlsTerminator``) share.

    A subclass sets its own attributes before calling ``__init__``, which starts accepting.
    """

    def __init__(self, backlog: int = 16) -> None:
        self._closed = False
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((HOST, 0))
        self._sock.listen(backlog)
        self.host = HOST
        self.port = int(self._sock.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn: socket.socket) -> None:
        """Serve one accepted connection, and close it."""
        raise NotImplementedError

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the thread waiting in accept()
        self._sock.close()


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


# --------------------------------------------------------------------------------------------
# OAuth2: a provider on loopback, a Dovecot that asks it about tokens, aiosmtpd with XOAUTH2

OAUTH_TENANT = "campus-tenant"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


class OAuthProvider:
    """A small OAuth2 provider on 127.0.0.1 standing in for Google, Microsoft 365 and others.

    Two listeners share one state: ``http_url`` (plain: Dovecot's introspection, generic clients)
    and ``https_url`` (TLS with the test CA: msal accepts nothing else). Routes:

    - ``POST /introspect`` (RFC 7662): ``{"active": true, "username": ...}`` for a live token;
    - ``POST /token`` and ``POST /<tenant>/oauth2/v2.0/token``: the refresh_token,
      authorization_code (PKCE checked) and device_code grants;
    - ``GET /authorize``: a person who consents at once, redirected back with a code;
    - ``GET /<tenant>/v2.0/.well-known/openid-configuration`` and
      ``POST /<tenant>/oauth2/v2.0/devicecode``: what msal discovers and starts.

    Tests seed tokens with ``grant``, end access tokens with ``expire`` and refresh tokens with
    ``revoke``; ``token_requests`` holds the grant type of every token request, in order.
    """

    client_id = "modbot-test-client"
    client_secret = "client-secret-0815"
    username = "counselor@campus.example"

    def __init__(self, cert: trustme.LeafCert) -> None:
        self.access_lifetime = 3600
        self.rotate_refresh = False  # Microsoft hands out a new refresh token at each refresh
        self.refresh_expires_in: int | None = None
        self.device_pending_polls = 2  # polls answered "authorization_pending" before consent
        self.token_requests: list[str] = []
        self._lock = threading.Lock()
        self._access: dict[str, tuple[str, float]] = {}
        self._refresh: dict[str, str] = {}
        self._revoked: set[str] = set()
        self._codes: dict[str, tuple[str, str, str]] = {}
        self._devices: dict[str, list[Any]] = {}
        self._servers: list[Any] = []
        self._threads: list[threading.Thread] = []
        self.http_url = self._listen(None)
        self.https_url = self._listen(server_ssl_context(cert))

    # what tests do ------------------------------------------------------------------------

    def grant(self, username: str | None = None) -> dict[str, Any]:
        """Sign ``username`` in: a fresh refresh and access token, as a token endpoint answers."""
        with self._lock:
            return self._issue(username or self.username, refresh=None)

    def expire(self, access_token: str) -> None:
        """End an access token now (its holder's copy still says it is valid)."""
        with self._lock:
            user, _ = self._access[access_token]
            self._access[access_token] = (user, 0.0)

    def revoke(self, refresh_token: str) -> None:
        """Revoke a refresh token, as a password change or an administrator would."""
        with self._lock:
            self._revoked.add(refresh_token)

    def introspect(self, token: str) -> str | None:
        """The user of a live access token, else None."""
        with self._lock:
            user, until = self._access.get(token, ("", 0.0))
        return user if user and time.time() < until else None

    def close(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=CLIENT_TIMEOUT)

    # the provider -------------------------------------------------------------------------

    def _issue(self, user: str, refresh: str | None) -> dict[str, Any]:
        access = "at-" + secrets.token_urlsafe(24)
        self._access[access] = (user, time.time() + self.access_lifetime)
        if refresh is None or self.rotate_refresh:
            if refresh is not None:
                self._revoked.add(refresh)
            refresh = "rt-" + secrets.token_urlsafe(24)
            self._refresh[refresh] = user
        answer: dict[str, Any] = {"access_token": access, "token_type": "Bearer",
                                  "expires_in": self.access_lifetime, "refresh_token": refresh,
                                  "scope": "mail"}
        if self.refresh_expires_in is not None:
            answer["refresh_token_expires_in"] = self.refresh_expires_in
        return answer

    def _token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        grant = form.get("grant_type", "")
        self.token_requests.append(grant)
        if form.get("client_id") != self.client_id or form.get(
                "client_secret", self.client_secret) != self.client_secret:
            return 401, {"error": "invalid_client"}
        if grant == "refresh_token":
            token = form.get("refresh_token", "")
            user = self._refresh.get(token)
            if user is None or token in self._revoked:
                return 400, {"error": "invalid_grant",
                             "error_description": "AADSTS70000: Token has been revoked."}
            return 200, self._issue(user, refresh=token)
        if grant == "authorization_code":
            user, challenge, redirect_uri = self._codes.pop(form.get("code", ""), ("", "", ""))
            verifier = form.get("code_verifier", "").encode()
            expected = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=")
            if not user or redirect_uri != form.get("redirect_uri") or \
                    expected.decode() != challenge:
                return 400, {"error": "invalid_grant"}
            return 200, self._issue(user, refresh=None)
        if grant == DEVICE_GRANT:
            device = self._devices.get(form.get("device_code", ""))
            if device is None:
                return 400, {"error": "expired_token"}
            if device[1] > 0:
                device[1] -= 1
                return 400, {"error": "authorization_pending"}
            del self._devices[form["device_code"]]
            return 200, self._issue(device[0], refresh=None)
        return 400, {"error": "unsupported_grant_type"}

    def _answer(self, method: str, path: str, form: dict[str, str],
                base: str) -> tuple[int, dict[str, Any] | str]:
        with self._lock:
            if method == "POST" and path == "/introspect":
                user, until = self._access.get(form.get("token", ""), ("", 0.0))
                live = bool(user) and time.time() < until
                return 200, ({"active": True, "username": user} if live else {"active": False})
            if method == "POST" and (path == "/token" or path.endswith("/oauth2/v2.0/token")):
                return self._token(form)
            if method == "GET" and path == "/authorize":
                code = "code-" + secrets.token_urlsafe(16)
                self._codes[code] = (form.get("login_hint") or self.username,
                                     form.get("code_challenge", ""), form.get("redirect_uri", ""))
                query = urllib.parse.urlencode({"code": code, "state": form.get("state", "")})
                return 302, f"{form.get('redirect_uri', '')}?{query}"
            tenant = f"{base}/{OAUTH_TENANT}"
            if method == "GET" and path == f"/{OAUTH_TENANT}/v2.0/.well-known/openid-configuration":
                return 200, {"issuer": f"{tenant}/v2.0",
                             "authorization_endpoint": f"{tenant}/oauth2/v2.0/authorize",
                             "token_endpoint": f"{tenant}/oauth2/v2.0/token",
                             "device_authorization_endpoint": f"{tenant}/oauth2/v2.0/devicecode"}
            if method == "POST" and path == f"/{OAUTH_TENANT}/oauth2/v2.0/devicecode":
                device_code, user_code = secrets.token_urlsafe(16), "WDJB-MJHT"
                self._devices[device_code] = [self.username, self.device_pending_polls]
                return 200, {"device_code": device_code, "user_code": user_code,
                             "verification_uri": f"{base}/devicelogin", "expires_in": 60,
                             "interval": 0,
                             "message": f"Open {base}/devicelogin and enter {user_code}."}
            return 404, {"error": "not_found"}

    def _listen(self, tls: ssl.SSLContext | None) -> str:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, method: str) -> None:
                parts = urllib.parse.urlsplit(self.path)
                form = dict(urllib.parse.parse_qsl(parts.query))
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    form.update(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                status, body = provider._answer(method, parts.path, form, base)
                if status == 302 and isinstance(body, str):
                    self.send_response(302)
                    self.send_header("Location", body)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._reply("GET")

            def do_POST(self) -> None:
                self._reply("POST")

            def log_message(self, format: str, *args: Any) -> None:
                return  # request lines and forms carry tokens

        server = ThreadingHTTPServer((HOST, 0), Handler)
        server.daemon_threads = True
        if tls is not None:
            server.socket = tls.wrap_socket(server.socket, server_side=True)
        base = f"{'https' if tls else 'http'}://{HOST}:{server.server_address[1]}"
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self._servers.append(server)
        self._threads.append(thread)
        return base

    # settings for modbot ------------------------------------------------------------------

    def oauth2_settings(self, provider: str, token_file: Path, **changes: Any) -> OAuth2Settings:
        """An oauth2 table that sends ``provider``'s requests here (https but for generic)."""
        values: dict[str, Any] = {"provider": provider, "client_id": self.client_id,
                                  "token_file": token_file}
        if provider == "microsoft":
            values.update(authority=self.https_url, tenant=OAUTH_TENANT)
        else:
            base = self.https_url if provider == "google" else self.http_url
            values.update(token_url=f"{base}/token", authorization_url=f"{base}/authorize",
                          client_secret=SecretStr(self.client_secret))
        values.update(changes)
        return OAuth2Settings(**values)


_OAUTH2_PASSDB = """\
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {ext}
}}
"""
_OAUTH2_EXT = """\
# Dovecot asks the test provider about every bearer token (RFC 7662 introspection).
introspection_mode = post
introspection_url = {url}
username_attribute = username
active_attribute = active
active_value = true
force_introspection = yes
"""


@dataclass
class OAuthDovecot(Dovecot):
    """A private Dovecot whose logins are XOAUTH2 / OAUTHBEARER tokens checked at a provider."""

    ext_dir: Path | None = None

    def imap_settings(self, oauth2: OAuth2Settings, username: str = OAuthProvider.username,
                      **changes: Any) -> ImapSettings:
        """Settings for modbot's Mailbox to log in here with XOAUTH2 over implicit TLS."""
        values: dict[str, Any] = {"host": self.host, "port": self.imaps_port, "security": "tls",
                                  "username": username, "auth": "oauth2", "oauth2": oauth2,
                                  "timeout_seconds": CLIENT_TIMEOUT}
        values.update(changes)
        return ImapSettings(**values)

    def stop(self) -> None:
        super().stop()
        if self.ext_dir is not None:
            shutil.rmtree(self.ext_dir, ignore_errors=True)


def start_oauth_dovecot(cert: trustme.LeafCert, client_context: ssl.SSLContext,
                        introspection_url: str) -> OAuthDovecot:
    """Start a Dovecot like ``start_dovecot``'s with an oauth2 passdb asking ``introspection_url``.

    Its own instance, so that the shared one's configuration stays as every other test knows
    it. The passdb's settings file must exist before Dovecot starts, so it lives in a folder of
    its own (readable by Dovecot's auth process).
    """
    global _DOVECOT_CONF
    # Not INSTANCE_PREFIX: remove_stale_instances would take this folder, which has no
    # master.pid, for a dead instance's and remove it under the running server.
    ext_dir = Path(tempfile.mkdtemp(prefix="modbot-oauth-", dir=INSTANCE_PARENT))
    ext_dir.chmod(0o755)
    ext = ext_dir / "dovecot-oauth2.conf.ext"
    ext.write_text(_OAUTH2_EXT.format(url=introspection_url), encoding="ascii")
    ext.chmod(0o644)
    template = _DOVECOT_CONF
    mechanisms = "auth_mechanisms = plain login"
    first_passdb = "passdb {{\n  driver = passwd-file"
    if mechanisms not in template or first_passdb not in template:
        shutil.rmtree(ext_dir, ignore_errors=True)
        raise ServerUnavailable("the Dovecot template changed; update start_oauth_dovecot")
    # start_dovecot reads the module's template when it runs: give it the oauth2 variant for
    # this one call (the test session is single-threaded).
    _DOVECOT_CONF = template.replace(mechanisms, "auth_mechanisms = xoauth2 oauthbearer plain") \
        .replace(first_passdb, _OAUTH2_PASSDB.replace("{ext}", str(ext)) + first_passdb)
    try:
        server = start_dovecot(cert, client_context)
    except BaseException:
        shutil.rmtree(ext_dir, ignore_errors=True)
        raise
    finally:
        _DOVECOT_CONF = template
    return OAuthDovecot(server.root, server.process, server.imaps_port, server.imap_port,
                        server.client_context, ext_dir=ext_dir)


class OAuthSmtpServer(SmtpServer):
    """An ``SmtpServer`` that also takes AUTH XOAUTH2 with a live token of ``provider``.

    A refused token gets what Gmail sends: a 334 challenge with a JSON error, then 535 once the
    client answers it with an empty line.
    """

    def __init__(self, mode: SmtpMode, cert: trustme.LeafCert, provider: OAuthProvider) -> None:
        super().__init__(mode, cert)
        self.provider = provider

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        blob = args[1] if len(args) > 1 else await server.challenge_auth("")
        try:
            raw = base64.b64decode(blob, validate=True) if isinstance(blob, str) else blob
            fields = dict(part.split("=", 1) for part in raw.decode().split("\x01") if part)
            user, token = fields["user"], fields["auth"].removeprefix("Bearer ")
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            return AuthResult(success=False, handled=False)
        self.auth_attempts.append(user)
        if self.provider.introspect(token) == user:
            return AuthResult(success=True, handled=False, auth_data=user)
        await server.challenge_auth(json.dumps({"status": "401", "schemes": "bearer"}))
        return AuthResult(success=False, handled=False)

    def smtp_oauth2_settings(self, oauth2: OAuth2Settings,
                             username: str = OAuthProvider.username) -> SmtpSettings:
        """Settings for modbot's Sender to log in here with XOAUTH2."""
        return self.smtp_settings(login=False, auth="oauth2", oauth2=oauth2, username=username)
