"""IMAP IDLE on a real Dovecot: new mail answered within seconds, a cut line reconnected, a
server without IDLE left to the interval poll, and a prompt stop."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import select
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from support import faults, servers

from modbot import idle
from modbot.config import Config, ImapSettings, ScheduleSettings
from modbot.daemon import run_daemon
from modbot.errors import MailboxError
from modbot.idle import IdleWatcher
from modbot.mailbox import Mailbox

pytestmark = pytest.mark.integration

ANSWERED_WITHIN = 3.0  # seconds from a notification's arrival to its reply at the SMTP server
ARRIVALS = 10


def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


async def async_wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


class Relay(servers.Listener):
    """A loopback TCP relay to ``target`` (TLS passes through as opaque bytes).

    ``hide_idle`` takes IDLE out of the capabilities a plain IMAP server lists: a server like
    any other that merely does not offer IDLE (Dovecot counts connections from 127.0.0.1 as
    secure, so the login works without TLS). ``freeze`` makes the connections open at that
    moment go silent both ways while staying open, as a line a NAT forgot; new ones still work.
    """

    def __init__(self, target: tuple[str, int], *, hide_idle: bool = False) -> None:
        self.target = target
        self.hide_idle = hide_idle
        self.idle_commands = 0
        self._open: set[socket.socket] = set()
        self._frozen: set[socket.socket] = set()
        super().__init__()

    def freeze(self) -> None:
        self._frozen |= self._open

    def handle(self, conn: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=10)
        except OSError:
            conn.close()
            return
        self._open.add(conn)
        with conn, upstream:
            pending = b""
            while True:
                if conn in self._frozen:
                    time.sleep(0.05)
                    continue
                ready, _, _ = select.select([conn, upstream], [], [], 0.1)
                for sock in ready:
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        data = b""
                    if not data:
                        self._open.discard(conn)
                        return
                    if sock is conn:
                        self.idle_commands += data.upper().count(b" IDLE\r\n")
                        upstream.sendall(data)
                    elif not self.hide_idle:
                        conn.sendall(data)
                    else:
                        pending += data
                        lines, _, pending = pending.rpartition(b"\r\n")
                        if lines:
                            conn.sendall(b"\r\n".join(
                                line.replace(b" IDLE", b"") if b"CAPABILITY" in line else line
                                for line in lines.split(b"\r\n")) + b"\r\n")


@pytest.fixture
def watched(imap_user: servers.ImapUser, ca_file: Path) -> ImapSettings:
    return imap_user.imap_settings(ca_file=ca_file)


# --- the mailbox --------------------------------------------------------------------------------


def test_dovecot_offers_idle(watched: ImapSettings,
                             client_ssl_context: ssl.SSLContext) -> None:
    """Dovecot lists IDLE among its capabilities after login."""
    with Mailbox(watched, client_ssl_context) as mailbox:
        assert mailbox.supports_idle()


def test_idle_reports_new_mail_not_flag_changes(watched: ImapSettings, imap_user: servers.ImapUser,
                                                client_ssl_context: ssl.SSLContext) -> None:
    """An arrival is news; another client setting a keyword on a message is not."""
    uid = imap_user.append("INBOX", faults.fixture(faults.NEWSLETTER))
    with Mailbox(watched, client_ssl_context) as mailbox:
        mailbox.select("INBOX", readonly=True)
        mailbox.idle_start()
        with imap_user.connect() as other:
            other.select_folder("INBOX")
            other.add_flags([uid], ["$Other"])
        assert not any(mailbox.idle_wait(0.5) for _ in range(4))
        imap_user.append("INBOX", faults.fixture(faults.JORDAN))
        assert any(mailbox.idle_wait(0.5) for _ in range(10))
        mailbox.idle_done()
        assert not mailbox.noop()


def test_idle_wait_raises_when_the_server_hangs_up(
        watched: ImapSettings, imap_user: servers.ImapUser, dovecot: servers.Dovecot,
        client_ssl_context: ssl.SSLContext) -> None:
    """A connection the server closes (doveadm kick) fails the wait instead of looking quiet."""
    with Mailbox(watched, client_ssl_context) as mailbox:
        mailbox.select("INBOX", readonly=True)
        mailbox.idle_start()
        dovecot.kick(imap_user)
        with pytest.raises(MailboxError, match=r"closed|ended"):
            for _ in range(10):
                mailbox.idle_wait(0.5)


# --- the watcher ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("failures", "seconds"), [(1, 1), (2, 2), (3, 4), (9, 256), (10, 300),
                                                    (50, 300)])
def test_backoff_is_bounded(failures: int, seconds: float) -> None:
    """Reconnections wait 1, 2, 4 ... seconds, never more than five minutes."""
    assert idle.backoff(failures) == timedelta(seconds=seconds)


class Watch:
    """An IdleWatcher running as a task, counting the news it reports."""

    def __init__(self, imap: ImapSettings, tls: ssl.SSLContext, **options: float) -> None:
        self.news = 0
        self.watcher = IdleWatcher(imap, tls, self._count, **options)
        self.task = asyncio.create_task(self.watcher.run())

    def _count(self) -> None:
        self.news += 1

    async def stop(self) -> float:
        """Stop the watcher; how long it took to return."""
        started = time.monotonic()
        self.watcher.stop()
        await asyncio.wait_for(self.task, 10)
        return time.monotonic() - started


async def test_watcher_reports_arrivals_and_stops_promptly(
        watched: ImapSettings, imap_user: servers.ImapUser,
        client_ssl_context: ssl.SSLContext) -> None:
    """The watcher asks for a poll once connected, again for each arrival, and stops within
    about its one-second check."""
    watch = Watch(watched, client_ssl_context)
    assert await async_wait_for(lambda: watch.news == 1, 10)
    imap_user.append("INBOX", faults.fixture(faults.JORDAN))
    assert await async_wait_for(lambda: watch.news == 2, 3)
    assert await watch.stop() < idle.CHECK_SECONDS + 1.5
    assert watch.watcher.connections == 1


async def test_a_waiting_watcher_holds_no_thread(
        watched: ImapSettings, imap_user: servers.ImapUser,
        client_ssl_context: ssl.SSLContext) -> None:
    """While it waits in IDLE the event loop watches its socket and no thread waits for it, so
    that one daemon can watch hundreds of inboxes; mail still arrives as news."""
    watch = Watch(watched, client_ssl_context)
    assert await async_wait_for(lambda: watch.news == 1, 10)
    await asyncio.sleep(0.5)
    assert not [t for t in threading.enumerate() if t.name == "modbot-idle"]
    imap_user.append("INBOX", faults.fixture(faults.JORDAN))
    assert await async_wait_for(lambda: watch.news == 2, 3)
    await watch.stop()


async def test_watcher_reissues_idle_and_keeps_reporting(
        watched: ImapSettings, imap_user: servers.ImapUser,
        client_ssl_context: ssl.SSLContext) -> None:
    """Leaving and re-entering IDLE (with a NOOP between) keeps the same connection working."""
    watch = Watch(watched, client_ssl_context, restart_seconds=0.3, quiet_seconds=0.2,
                  check_seconds=0.1)
    assert await async_wait_for(lambda: watch.news == 1, 10)
    await asyncio.sleep(1.5)  # several rounds of DONE, NOOP, IDLE
    imap_user.append("INBOX", faults.fixture(faults.JORDAN))
    assert await async_wait_for(lambda: watch.news >= 2, 3)
    await watch.stop()
    assert watch.watcher.connections == 1


async def test_watcher_reconnects_after_a_kick(
        watched: ImapSettings, imap_user: servers.ImapUser, dovecot: servers.Dovecot,
        client_ssl_context: ssl.SSLContext, caplog: pytest.LogCaptureFixture) -> None:
    """A connection the server closes is opened again after a second, asks for a poll, and
    reports mail; a later cut waits a second again, not longer."""
    caplog.set_level(logging.WARNING, logger="modbot")
    watch = Watch(watched, client_ssl_context)
    assert await async_wait_for(lambda: watch.news == 1, 10)
    await asyncio.to_thread(dovecot.kick, imap_user)
    assert await async_wait_for(lambda: watch.watcher.connections == 2, 10)
    assert watch.news == 2  # the reconnection asks for a poll: mail may have come meanwhile
    await asyncio.to_thread(imap_user.append, "INBOX", faults.fixture(faults.JORDAN))
    assert await async_wait_for(lambda: watch.news == 3, 3)
    await asyncio.to_thread(dovecot.kick, imap_user)
    assert await async_wait_for(lambda: watch.watcher.connections == 3, 10)
    await watch.stop()
    assert caplog.text.count("connecting again in 1 s") == 2


async def test_watcher_replaces_a_connection_gone_silent(
        imap_user: servers.ImapUser, client_ssl_context: ssl.SSLContext,
        caplog: pytest.LogCaptureFixture) -> None:
    """A line that goes silent while idling fails the next NOOP within its timeout and is
    replaced; the new connection reports mail."""
    caplog.set_level(logging.WARNING, logger="modbot")
    relay = Relay((servers.HOST, imap_user.port))
    try:
        settings = imap_user.imap_settings(port=relay.port, timeout_seconds=1.0)
        watch = Watch(settings, client_ssl_context, quiet_seconds=0.5, check_seconds=0.2)
        assert await async_wait_for(lambda: watch.watcher.connections == 1, 10)
        relay.freeze()
        assert await async_wait_for(lambda: watch.watcher.connections == 2, 10)
        assert "no answer within 1 s" in caplog.text
        news = watch.news
        await asyncio.to_thread(imap_user.append, "INBOX", faults.fixture(faults.JORDAN))
        assert await async_wait_for(lambda: watch.news > news, 3)
        await watch.stop()
    finally:
        relay.close()


async def test_watcher_leaves_a_server_without_idle_to_the_poll(
        imap_user: servers.ImapUser, client_ssl_context: ssl.SSLContext) -> None:
    """Against a server that does not offer IDLE, the watcher returns at once, asking nothing."""
    proxy = Relay((servers.HOST, imap_user.starttls_port), hide_idle=True)
    try:
        settings = imap_user.imap_settings(port=proxy.port, security="none")
        watch = Watch(settings, client_ssl_context)
        await asyncio.wait_for(watch.task, 10)
        assert watch.news == 0
        assert proxy.idle_commands == 0
    finally:
        proxy.close()


async def test_watcher_does_nothing_when_idle_is_off(
        watched: ImapSettings, client_ssl_context: ssl.SSLContext) -> None:
    """With ``idle = false`` the watcher does not even connect."""
    watch = Watch(watched.model_copy(update={"idle": False}), client_ssl_context)
    await asyncio.wait_for(watch.task, 1)
    assert watch.watcher.connections == 0


# --- the daemon -----------------------------------------------------------------------------------


def quantile(samples: list[float], q: float) -> float:
    """The nearest-rank quantile: the smallest sample with at least ``q`` of them at or below."""
    ordered = sorted(samples)
    return ordered[max(math.ceil(q * len(ordered)), 1) - 1]


class Daemon:
    """``modbot run`` in a child process, its stderr collected line by line."""

    def __init__(self, config: Path, password: str) -> None:
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "modbot", "--config", str(config), "run"],
            env={**os.environ, "MODBOT_IMAP_PASSWORD": password,
                 "MODBOT_SMTP_PASSWORD": servers.SmtpServer.password},
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    def said(self, text: str) -> int:
        return sum(text in line for line in self.lines)

    def stop(self) -> float:
        """SIGTERM, then how long the daemon took to exit."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=20)
        return time.monotonic() - started


def test_daemon_answers_within_seconds_over_idle(
        tmp_path: Path, imap_user: servers.ImapUser, smtp_server: servers.SmtpServer,
        dovecot: servers.Dovecot, ca_file: Path) -> None:
    """`modbot run` answers each notification within 3 s of its arrival, though it polls only
    every 5 minutes; after the server cuts the IDLE line it reconnects and still answers; and
    SIGTERM stops it within seconds."""
    crowd = faults.Crowd(ARRIVALS + 1, seed=7)
    config = faults.write_config(tmp_path, imap_user, smtp_server, ca_file,
                                 directory=crowd.directory_csv())
    daemon = Daemon(config, imap_user.password)
    try:
        assert wait_for(lambda: daemon.said("over IDLE") == 1, 20), "".join(daemon.lines)
        assert wait_for(lambda: daemon.said("poll:") >= 2, 20)  # at start, and on connecting
        latencies = []
        spacing = random.Random(5)
        for serial, message in enumerate(crowd.messages()[:ARRIVALS]):
            imap_user.append("INBOX", message)
            arrived = time.monotonic()
            assert wait_for(lambda n=serial: len(smtp_server.messages) > n, 10), \
                "".join(daemon.lines)
            latencies.append(time.monotonic() - arrived)
            # Irregular gaps: arrivals in step with the server's own timers would flatter the
            # figures (Dovecot reports a change up to half a second after it happens).
            time.sleep(spacing.uniform(0.1, 0.9))
        print(f"\nIDLE arrival -> reply over {len(latencies)} arrivals: "
              f"p50 {statistics.median(latencies):.2f} s, p95 {quantile(latencies, 0.95):.2f} s, "
              f"max {max(latencies):.2f} s")
        assert max(latencies) < ANSWERED_WITHIN, latencies

        dovecot.kick(imap_user)
        assert wait_for(lambda: daemon.said("over IDLE") == 2, 15), "".join(daemon.lines)
        imap_user.append("INBOX", crowd.messages()[ARRIVALS])
        arrived = time.monotonic()
        assert wait_for(lambda: len(smtp_server.messages) == ARRIVALS + 1, 10), \
            "".join(daemon.lines)
        assert time.monotonic() - arrived < ANSWERED_WITHIN

        took = daemon.stop()
    finally:
        daemon.process.kill()
    assert daemon.process.returncode == 0, "".join(daemon.lines)
    assert took < idle.CHECK_SECONDS + idle.STOP_SECONDS + 2, took
    assert len(faults.recipients_count(smtp_server)) == ARRIVALS + 1  # each person answered once
    # The IDLE connection left IDLE and logged out; Dovecot notes a connection dropped while
    # idling as "Connection closed (IDLE running for ...)".
    log = (dovecot.root / "dovecot.log").read_text(errors="replace")
    assert not [line for line in log.splitlines()
                if imap_user.username in line and "IDLE running" in line]


async def test_interval_poll_answers_when_the_server_offers_no_idle(
        tmp_path: Path, imap_user: servers.ImapUser, smtp_server: servers.SmtpServer,
        ca_file: Path) -> None:
    """Without IDLE the daemon still answers, on its poll interval."""
    proxy = Relay((servers.HOST, imap_user.starttls_port), hide_idle=True)
    settings = faults.settings_for(tmp_path, imap_user, smtp_server, ca_file,
                                   imap={"port": proxy.port, "security": "none"})
    # One second between polls (the configuration allows no less than ten) keeps this short.
    settings = settings.model_copy(update={"schedule": ScheduleSettings.model_construct(
        poll_seconds=1)})
    stop = asyncio.Event()
    daemon = asyncio.create_task(run_daemon(Config((settings,)), stop))
    try:
        await asyncio.sleep(1.5)  # the first poll has run and set the cursor
        await asyncio.to_thread(imap_user.append, "INBOX", faults.fixture(faults.JORDAN))
        assert await async_wait_for(lambda: len(smtp_server.messages) == 1, 10)
        assert proxy.idle_commands == 0
    finally:
        stop.set()
        await asyncio.wait_for(daemon, 15)
        proxy.close()
