"""Learn of new mail within seconds: one IMAP IDLE watcher per account, inside the daemon.

The watcher keeps a connection of its own (a separate ``Mailbox``), selects the watched folder
read-only and waits in IDLE (RFC 2177). When the server reports new mail it calls ``on_news``,
and the daemon runs the account's usual poll at once; the poll on its interval stays as the
safety net, so a watcher that is down, or a server without IDLE, only makes modbot slower.

- While it waits, the event loop watches the connection's socket: an inbox waiting in IDLE
  takes no thread and costs nothing until the server speaks, so one daemon can watch hundreds.
  What the server said is then read in a thread of its own, as is every other IMAP command.
  A stop is prompt: the wait ends at once, and a thread leaves IDLE and logs out. (Where the
  loop cannot watch sockets, a thread waits instead, ``check_seconds`` (1 s) at a time.)
- IDLE is left and entered again every ``restart_seconds`` (10 min), well inside the 29 minutes
  RFC 2177 allows; after ``quiet_seconds`` (4 min) without news a NOOP goes in between, so a
  connection that died without a word (a NAT that forgot it) is found within minutes.
- Any failure closes the connection and opens a new one after a backoff of 1, 2, 4 ... seconds,
  at most 5 minutes (afresh from 1 s once a connection has reached IDLE); each new connection
  asks for a poll, for mail that arrived meanwhile.

The watcher never reads, flags or moves a message, and logs no message content. It reads the
monotonic clock only to pace itself; the pipeline's ``now`` still comes from the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from modbot.config import ImapSettings
from modbot.errors import ModbotError
from modbot.mailbox import Mailbox

log = logging.getLogger(__name__)
T = TypeVar("T")

CHECK_SECONDS = 1.0
RESTART_SECONDS = 600.0
QUIET_SECONDS = 240.0
STOP_SECONDS = 3.0  # leaving IDLE and logging out at a stop; then the socket is cut
MAX_BACKOFF = timedelta(minutes=5)


def _settle(future: asyncio.Future[Any], setter: Callable[[Any], None], value: object) -> None:
    if not future.done():  # not cancelled by a timeout meanwhile
        setter(value)


def backoff(failures: int) -> timedelta:
    """How long to wait before reconnecting after ``failures`` failures in a row: 1, 2, 4 ...
    seconds, never more than five minutes."""
    return min(timedelta(seconds=2 ** min(max(failures - 1, 0), 16)), MAX_BACKOFF)


class IdleWatcher:
    """Watches one account's folder over IDLE and calls ``on_news`` when mail arrives.

    ``run`` returns when ``stop`` is called, or at once when ``imap.idle`` is false or the
    server offers no IDLE (the interval poll then finds new mail alone).
    """

    def __init__(self, imap: ImapSettings, tls: ssl.SSLContext, on_news: Callable[[], None], *,
                 name: str = "", check_seconds: float = CHECK_SECONDS,
                 restart_seconds: float = RESTART_SECONDS, quiet_seconds: float = QUIET_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.imap = imap
        self._tls = tls
        self._on_news = on_news
        self._name = name or f"{imap.username}@{imap.host}"
        self._check = check_seconds
        self._restart = restart_seconds
        self._quiet = quiet_seconds
        self._clock = clock
        self._stopping = asyncio.Event()
        self.connections = 0  # sessions that reached IDLE, for tests and logs

    def stop(self) -> None:
        """Ask ``run`` to leave IDLE, log out and return (the wait ends at once)."""
        self._stopping.set()

    async def run(self) -> None:
        """Watch until stopped; failures reconnect with a bounded backoff, never raise."""
        if not self.imap.idle:
            return
        failures = 0
        while not self._stopping.is_set():
            reached = self.connections
            try:
                if not await self._session():
                    log.info("%s: the IMAP server offers no IDLE; new mail is found by the "
                             "poll on its interval", self._name)
                    return
            except Exception as exc:  # the watcher outlives any failure, like the daemon
                if self._stopping.is_set():
                    return
                # A connection that reached IDLE worked: its end starts the backoff afresh.
                failures = 1 if self.connections > reached else failures + 1
                delay = backoff(failures).total_seconds()
                reason = str(exc) if isinstance(exc, ModbotError) else type(exc).__name__
                log.warning("%s: IDLE: %s; connecting again in %g s", self._name,
                            reason.rstrip("."), delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)

    async def _call(self, function: Callable[..., T], *args: object) -> T:
        """``function(*args)`` in a thread of its own, so the waits never take a thread the
        polls need; a daemon thread, so a server that hangs cannot hold up the exit."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()

        def deliver(setter: Callable[[Any], None], value: object) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
                loop.call_soon_threadsafe(_settle, done, setter, value)

        def target() -> None:
            try:
                result = function(*args)
            except BaseException as exc:  # handed to the awaiting task, which decides
                deliver(done.set_exception, exc)
            else:
                deliver(done.set_result, result)

        threading.Thread(target=target, name="modbot-idle", daemon=True).start()
        return await done

    def _news(self) -> None:
        if not self._stopping.is_set():
            self._on_news()

    async def _session(self) -> bool:
        """One connection: IDLE until stopped (True) or a failure (raises); False: no IDLE."""
        mailbox = Mailbox(self.imap, self._tls)
        await self._call(mailbox.__enter__)
        try:
            if not await self._call(mailbox.supports_idle):
                return False
            await self._call(lambda: mailbox.select(self.imap.folder, readonly=True))
            await self._call(mailbox.idle_start)
            self.connections += 1
            log.info("%s: waiting for new mail in %s over IDLE", self._name, self.imap.folder)
            # Mail that arrived before IDLE began, or while no connection listened.
            self._news()
            started = quiet_since = self._clock()
            while not self._stopping.is_set():
                left = min(started + self._restart, quiet_since + self._quiet) - self._clock()
                if await self._wait(mailbox, left):
                    self._news()
                    quiet_since = self._clock()
                if self._stopping.is_set():
                    break
                now = self._clock()
                if now - started >= self._restart or now - quiet_since >= self._quiet:
                    news = await self._call(mailbox.idle_done)
                    news = await self._call(mailbox.noop) or news
                    if news:
                        self._news()
                    await self._call(mailbox.idle_start)
                    started = quiet_since = self._clock()
            return True
        finally:
            await self._close(mailbox)

    async def _wait(self, mailbox: Mailbox, seconds: float) -> bool:
        """Wait in IDLE for at most ``seconds``, or until stopped; True when the server reported
        new mail.

        The event loop watches the socket, so the wait takes no thread and no wakeup until the
        server speaks; only then is its answer read, in a thread. Where the loop cannot watch a
        socket (not a selector loop), a thread waits at most ``check_seconds``.
        """
        seconds = max(0.0, seconds)
        loop = asyncio.get_running_loop()
        fd = mailbox.idle_fileno()
        readable: asyncio.Future[bool] = loop.create_future()
        try:
            loop.add_reader(fd, _settle, readable, readable.set_result, True)
        except NotImplementedError:
            return await self._call(mailbox.idle_wait, min(self._check, seconds))
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait((readable, stopping), timeout=seconds,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            loop.remove_reader(fd)
            stopping.cancel()
        if not readable.done() or self._stopping.is_set():
            return False
        return await self._call(mailbox.idle_read)

    async def _close(self, mailbox: Mailbox) -> None:
        """Leave IDLE and log out within ``STOP_SECONDS``, else cut the connection."""
        try:
            await asyncio.wait_for(self._call(mailbox.__exit__, None, None, None), STOP_SECONDS)
        except TimeoutError:
            mailbox.abort()
