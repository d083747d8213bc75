"""Embedded IMAP and SMTP servers on loopback, started inside the caller's asyncio event loop.

``modbot demo`` uses them so that modbot's real poll (imapclient and aiosmtplib, each over a real
socket) runs on a machine with no mail server installed; tests use them for the IMAP path where the
server cannot store custom keywords (pymap's PERMANENTFLAGS has no ``\\*``), so modbot must remember
what it handled without writing a keyword to the mailbox.

IMAP is pymap's in-memory ``dict`` backend with one user whose INBOX holds the given messages;
SMTP is aiosmtpd, and every message it accepts is kept in :attr:`DemoServers.received` instead of
being delivered anywhere. Both speak plain text (no TLS), which modbot's configuration allows only
for loopback hosts.

These servers must never listen on anything but loopback: they bind 127.0.0.1 and nothing else.
They run no threads of their own; every connection is a task on the caller's loop, and leaving the
context manager closes the listeners, ends every open connection and waits for its task.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from argparse import Namespace
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any
from uuid import uuid4

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from proxyprotocol.sock import SocketInfo
from pymap.backend.dict import Config as DictConfig
from pymap.backend.dict import Identity, Login
from pymap.backend.dict.filter import FilterSet
from pymap.backend.dict.mailbox import MailboxData, MailboxSet
from pymap.concurrent import Subsystem
from pymap.imap import IMAPServer
from pymap.parsing.message import AppendMessage
from pymap.user import UserMetadata
from pysasl.hashing import Cleartext

__all__ = ["LOOPBACK", "DemoServers", "ReceivedMail"]

#: The only address either server ever binds.
LOOPBACK = "127.0.0.1"

_SERVER_NAME = "modbot-demo.localhost"
# How long ``__aexit__`` waits for connection tasks to finish after they were told to stop.
_STOP_TIMEOUT_SECONDS = 5.0
# aiosmtpd's logger; aiosmtpd 1.4 itself sets a deprecated attribute on every successful AUTH and
# logs a warning about it, which would only confuse a reader of the demo's output.
_AIOSMTPD_LOGGER = "mail.log"
_AIOSMTPD_OWN_DEPRECATION = "Session.login_data is deprecated"


@dataclass(frozen=True)
class ReceivedMail:
    """One message the embedded SMTP server accepted."""

    envelope_from: str
    recipients: list[str]
    data: bytes


class _DemoImapConfig(DictConfig):
    """pymap settings for the demo: plain LOGIN on loopback, no DNS look-ups, no worker threads."""

    @property
    def greeting(self) -> bytes:
        # pymap's default greeting resolves the machine's FQDN on every connection.
        return b"Server ready " + _SERVER_NAME.encode("ascii")


def _imap_config(username: str, password: str) -> _DemoImapConfig:
    # pymap reads a few optional command-line settings from ``args``; none apply here.
    args = Namespace(passlib_cfg=None, proxy_protocol=None, debug=False)
    return _DemoImapConfig(
        args,
        host=LOOPBACK,
        port=0,
        demo_data=False,
        demo_user=username,
        demo_password=password,
        # Everything runs as coroutines on the caller's loop: no thread pool for hashing.
        subsystem=Subsystem.for_asyncio(),
        cpu_subsystem=Subsystem.for_asyncio(),
        # The password already sits in this process's memory; hashing it would only add start-up
        # time.
        hash_context=Cleartext(),
        # An empty server context, so pymap never loads certificates from CERT_FILE / KEY_FILE.
        ssl_context=ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER),
        tls_enabled=False,
        reject_dnsbl=False,
        invalid_user_sleep=0.0,
    )


class _RecordingHandler:
    """aiosmtpd handler that keeps every accepted message instead of delivering it."""

    def __init__(self, received: list[ReceivedMail]) -> None:
        self._received = received

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content
        if not isinstance(data, bytes):
            return "554 Transaction failed: no message data"
        self._received.append(
            ReceivedMail(
                envelope_from=str(envelope.mail_from),
                recipients=[str(rcpt) for rcpt in envelope.rcpt_tos],
                data=data,
            )
        )
        return "250 Message accepted"


class _Authenticator:
    """Accepts SMTP AUTH PLAIN / LOGIN with the demo user's credentials only."""

    def __init__(self, username: str, password: str) -> None:
        self._login = username.encode("utf-8")
        self._password = password.encode("utf-8")

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == self._login
            and auth_data.password == self._password
        ):
            return AuthResult(success=True, auth_data=auth_data.login.decode("utf-8"))
        return AuthResult(success=False, handled=False)


def _drop_aiosmtpd_own_deprecation(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith(_AIOSMTPD_OWN_DEPRECATION)


def _bound_port(server: asyncio.Server) -> int:
    port: int = server.sockets[0].getsockname()[1]
    return port


class DemoServers:
    """Embedded IMAP (pymap) and SMTP (aiosmtpd) servers on 127.0.0.1, as an async context manager.

    Entering starts both on free ports chosen by the OS (:attr:`imap_port`, :attr:`smtp_port`).
    IMAP has one user, ``username`` / ``password``, whose INBOX holds ``messages`` in order, all
    unseen and byte for byte as given; ``folders`` names further mailboxes to create empty (such as
    a Sent folder for modbot to keep copies of its replies in). SMTP accepts mail with or without
    AUTH (PLAIN and LOGIN succeed only with the same credentials) and records it in
    :attr:`received`. Clients may run in worker threads: the servers keep serving while the loop
    awaits them.
    """

    def __init__(
        self,
        *,
        username: str,
        password: str,
        messages: Sequence[bytes],
        folders: Sequence[str] = (),
    ) -> None:
        self._username = username
        self._password = password
        self._messages = tuple(messages)
        self._folders = tuple(folders)
        self.received: list[ReceivedMail] = []
        self._inbox: MailboxData | None = None
        self._imap_server: asyncio.Server | None = None
        self._smtp_server: asyncio.Server | None = None
        self._imap_port: int | None = None
        self._smtp_port: int | None = None
        self._imap_tasks: set[asyncio.Task[Any]] = set()
        self._smtp_protocols: list[SMTP] = []

    @property
    def imap_port(self) -> int:
        """The IMAP server's port on 127.0.0.1."""
        if self._imap_port is None:
            raise RuntimeError("DemoServers has not been started")
        return self._imap_port

    @property
    def smtp_port(self) -> int:
        """The SMTP server's port on 127.0.0.1."""
        if self._smtp_port is None:
            raise RuntimeError("DemoServers has not been started")
        return self._smtp_port

    async def __aenter__(self) -> DemoServers:
        if self._imap_server is not None or self._smtp_server is not None:
            raise RuntimeError("DemoServers is already running")
        try:
            await self._start_imap()
            await self._start_smtp()
        except BaseException:
            await self._stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stop()

    def inbox_flags(self) -> dict[int, tuple[str, ...]]:
        """The stored flags of every message in INBOX, by UID, each tuple sorted.

        Read straight from the in-memory mailbox, so it is safe to call from the event loop's own
        thread. Only flags the server keeps are shown: system flags such as ``\\Seen``, never
        ``\\Recent`` (a per-session flag) and never custom keywords (pymap does not store them).
        """
        if self._inbox is None:
            raise RuntimeError("DemoServers has not been started")
        # pymap's dict backend keeps INBOX as a plain {uid: Message} mapping; messages() would give
        # the same through an async lock, which a synchronous method cannot take.
        stored = dict(self._inbox._messages)
        return {
            uid: tuple(sorted(flag.value.decode("ascii") for flag in message.permanent_flags))
            for uid, message in sorted(stored.items())
        }

    async def _start_imap(self) -> None:
        config = _imap_config(self._username, self._password)
        login = Login(config)
        await Identity(self._username, login, None, frozenset()).set(
            UserMetadata(config, self._username, password=self._password)
        )
        mailbox_set = MailboxSet()
        inbox = await mailbox_set.get_mailbox("INBOX")
        for raw in self._messages:
            await inbox.append(AppendMessage(raw, datetime.now(UTC), frozenset()), recent=True)
        for name in self._folders:
            await mailbox_set.add_mailbox(name)
        # The dict backend looks a user's mailboxes up here at login; filling it first means the
        # user logs in to this INBOX rather than an empty one.
        config.set_cache[self._username] = (mailbox_set, FilterSet())
        self._inbox = inbox

        imap = IMAPServer(login, config)

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            if task is not None:
                self._imap_tasks.add(task)
            try:
                await imap(reader, writer, SocketInfo.get(writer, None, unique_id=uuid4().bytes))
            finally:
                if task is not None:
                    self._imap_tasks.discard(task)

        self._imap_server = await asyncio.start_server(serve, host=LOOPBACK, port=0)
        self._imap_port = _bound_port(self._imap_server)

    async def _start_smtp(self) -> None:
        loop = asyncio.get_running_loop()
        logging.getLogger(_AIOSMTPD_LOGGER).addFilter(_drop_aiosmtpd_own_deprecation)
        handler = _RecordingHandler(self.received)
        authenticator = _Authenticator(self._username, self._password)

        def new_session() -> SMTP:
            protocol = SMTP(
                handler,
                hostname=_SERVER_NAME,
                enable_SMTPUTF8=True,
                authenticator=authenticator,
                # Plain text is confined to loopback (see the module docstring).
                auth_require_tls=False,
                loop=loop,
            )
            # Forget sessions that have ended, so a long demo does not accumulate them.
            self._smtp_protocols[:] = [p for p in self._smtp_protocols if p.transport is not None]
            self._smtp_protocols.append(protocol)
            return protocol

        self._smtp_server = await loop.create_server(new_session, host=LOOPBACK, port=0)
        self._smtp_port = _bound_port(self._smtp_server)

    async def _stop(self) -> None:
        servers = [s for s in (self._imap_server, self._smtp_server) if s is not None]
        self._imap_server = self._smtp_server = None
        for server in servers:
            server.close()

        # pymap answers a cancelled connection with BYE and closes it; aiosmtpd ends its session
        # task when the transport is closed.
        pending: list[asyncio.Task[Any]] = []
        for task in self._imap_tasks:
            task.cancel()
            pending.append(task)
        for protocol in self._smtp_protocols:
            transport = protocol.transport
            if transport is not None:
                transport.close()
            session_task = getattr(protocol, "_handler_coroutine", None)
            if isinstance(session_task, asyncio.Task):
                pending.append(session_task)
        self._smtp_protocols.clear()
        if pending:
            await asyncio.wait(pending, timeout=_STOP_TIMEOUT_SECONDS)
        for server in servers:
            await server.wait_closed()
        logging.getLogger(_AIOSMTPD_LOGGER).removeFilter(_drop_aiosmtpd_own_deprecation)
