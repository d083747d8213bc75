"""The long-running daemon: for each account the poll job, the IDLE watcher and the weekly
digest job; and clean shutdown.

This is the only module that reads the clock for the pipeline. It wires the stages through
``poll.Poller`` and ``digest``, and it keeps running whatever one poll does: a failed poll is
recorded and logged in one sentence, and the next one runs on schedule. Accounts run side by
side; one that fails never holds up another.

The digest is sent exactly once per scheduled time, even across downtime: the store remembers
the last scheduled time a digest was sent for, and at start and at each firing modbot sends at
most one digest for the latest scheduled time that has passed (APScheduler's in-memory misfire
handling alone would silently skip a digest due while the daemon was down).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from modbot import digest, review, sdnotify
from modbot.config import Account, Config, DigestSettings
from modbot.errors import ConfigError, MaybeSentError, ModbotError
from modbot.idle import CHECK_SECONDS, STOP_SECONDS, IdleWatcher
from modbot.lock import (
    DAEMON_PREFIX,
    AccountLock,
    LockSession,
    acquire_account_lock,
    shares_locks,
)
from modbot.outbox import send_one
from modbot.poll import Context, Poller, PollReport
from modbot.render import make_message_id
from modbot.standby import Standby
from modbot.store import Store

if TYPE_CHECKING:
    from apscheduler.job import Job
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

log = logging.getLogger(__name__)
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def latest_digest_due(schedule: DigestSettings, now: datetime) -> datetime:
    """The most recent scheduled digest time at or before ``now`` (aware, UTC)."""
    try:
        zone = ZoneInfo(schedule.timezone)
    except (KeyError, ValueError):
        raise ConfigError(f"digest.timezone: unknown time zone {schedule.timezone!r}") from None
    local = now.astimezone(zone)
    hour, minute = (int(part) for part in schedule.time.split(":"))
    days_back = (local.weekday() - DAYS.index(schedule.day)) % 7
    candidate = (local - timedelta(days=days_back)).replace(
        hour=hour, minute=minute, second=0, microsecond=0)
    if candidate > local:
        candidate -= timedelta(days=7)
    return candidate.astimezone(UTC)


async def send_digest_if_due(ctx: Context, now: datetime, *, force: bool = False) -> bool:
    """Send the digest for the latest passed schedule time unless it was sent; True if sent.

    However long modbot was down, and however many scheduled times passed meanwhile, one late
    digest goes out for the latest of them. The digest is claimed in the store before it is
    sent, so two daemons or a crash after sending never send it twice; a send that surely
    failed gives the claim back and is tried again at the next poll.
    """
    settings = ctx.settings
    due = latest_digest_due(settings.digest, now)
    last = ctx.store.last_digest_due(settings.account)
    if not force and last is None:
        # A new installation: the first digest is the next scheduled one, not one at once.
        ctx.store.digest_sent(settings.account, due, now, "-")
        return False
    if not force and last is not None and last >= due:
        return False
    key = due if not force else now
    message_id = make_message_id(settings.counselor.domain)
    if not ctx.store.digest_claim(settings.account, key, now, message_id):
        return False  # another daemon is sending it
    try:
        data = digest.gather(ctx.store, settings, now, directory_skipped=directory_skipped(ctx))
        # Its one-time token lets the counselor resolve the items it numbers by answering it.
        reference = review.register_digest(ctx.store, settings, message_id,
                                           digest.listed(data), now)
        message = digest.build(data, ctx.templates, settings.counselor, now=now,
                               message_id=message_id, reference=reference)
        await send_one(message, settings.smtp, ctx.smtp_tls)
    except MaybeSentError:
        raise  # it may have arrived: the claim stays, so it is never sent twice
    except BaseException:
        ctx.store.digest_release(settings.account, key)
        review.review_email_failed(ctx.store, message_id)
        raise
    log.info("weekly digest sent")
    return True


def directory_skipped(ctx: Context) -> int:
    """The rows of the directory export the polls skip, for the digest's health."""
    try:
        return digest.skipped_rows(ctx.directory)
    except ModbotError:  # unreadable now: the polls hold what needs it and log why
        return 0


def poll_line(report: PollReport) -> str:
    """One poll in one log line: "poll: 3 new, 2 from LinkedIn (1 answered, 1 held); 1 sent"."""
    if not report.new_messages and not report.sent and not report.errors:
        return "poll: nothing new"
    line = f"poll: {report.new_messages} new"
    if report.candidates:
        actions = Counter(h.action for h in report.handled)
        done = ", ".join(f"{count} {_DONE.get(action, action)}"
                         for action, count in actions.most_common())
        line += f", {report.candidates} from LinkedIn" + (f" ({done})" if done else "")
    if report.sent:
        line += f"; {len(report.sent)} sent"
    if report.errors:
        line += f"; {len(report.errors)} problem{'s' if len(report.errors) > 1 else ''}"
    return line


_DONE = {"reply": "answered", "hold": "held", "log": "noted", "ignore": "ignored"}


def start_line(accounts: Sequence[Account], now: datetime) -> str:
    """What the daemon says when it starts: the mode of each account, how it watches the
    inboxes, and when the next digest goes out."""
    from modbot.cli_base import _version

    first = accounts[0]
    inboxes = ", ".join(f"{a.account} ({a.policy.mode.value} mode, {a.imap.folder})"
                        for a in accounts)
    watch = f"every {first.schedule.poll_seconds} s"
    if any(a.imap.idle for a in accounts):
        watch += " and at once when IDLE reports new mail"
    schedule = first.digest
    due = latest_digest_due(schedule, now + timedelta(days=7)).astimezone(
        ZoneInfo(schedule.timezone))
    return (f"modbot {_version()} started for {inboxes}; polling {watch}; next digest "
            f"{due:%a %Y-%m-%d %H:%M} {due.tzname()}")


async def send_review_email(ctx: Context, now: datetime) -> bool:
    """Send the review email when replies wait for approval and none went out recently."""
    settings = ctx.settings
    message_id = make_message_id(settings.counselor.domain)
    message = review.build_review_email(ctx.store, settings, ctx.templates, now, message_id)
    if message is None:
        return False
    try:
        await send_one(message, settings.smtp, ctx.smtp_tls)
    except ModbotError:
        review.review_email_failed(ctx.store, message_id)
        raise
    log.info("review email sent")
    return True


GRACE_SECONDS = 10.0  # how long a stop waits for a running poll before cancelling it


class _Inbox:
    """One account inside the daemon: its context, poller and lock, and its polls.

    Polls of one account never overlap, whoever asks (the interval, IDLE, the start): a request
    while a poll runs waits and runs right after it, so mail that arrived during the poll is
    not left for the next interval; requests while one already waits join that one. ``begin``
    and ``end`` start and stop serving the account (its jobs and its IDLE watcher), at start and
    stop, or whenever the account is taken over or given back.
    """

    def __init__(self, ctx: Context, lock: AccountLock, label: str) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.lock = lock
        self.poller = Poller(ctx, keep_open=True, fence=lock.check)
        self.label = label  # "user@host: " when the daemon handles several accounts, else ""
        self.stopping = False
        self._running = asyncio.Lock()
        self._waiting = False
        self._requests: set[asyncio.Task[None]] = set()
        self._jobs: list[Job] = []
        self._watcher: IdleWatcher | None = None
        self._watching: asyncio.Task[None] | None = None

    def begin(self, scheduler: AsyncIOScheduler, config: Config) -> None:
        """Serve the account: poll now and on the interval, digest on schedule, watch IDLE."""
        from apscheduler.triggers.cron import CronTrigger
        from apscheduler.triggers.interval import IntervalTrigger

        if not self._running.locked():
            # A new poller looks again for replies left half-sent, by a crash or another daemon.
            self.poller = Poller(self.ctx, keep_open=True, fence=self.lock.check)
        self.stopping = False
        account, schedule = self.settings.account, config.digest
        hour, minute = schedule.time.split(":")
        poll_seconds = config.schedule.poll_seconds
        self._jobs = [
            scheduler.add_job(
                self.poll_now, IntervalTrigger(seconds=poll_seconds),
                id=f"poll {account}", next_run_time=datetime.now(UTC), max_instances=1,
                coalesce=True, misfire_grace_time=poll_seconds, replace_existing=True),
            scheduler.add_job(
                self.digest_job,
                CronTrigger(day_of_week=schedule.day, hour=int(hour), minute=int(minute),
                            timezone=ZoneInfo(schedule.timezone)),
                id=f"digest {account}", max_instances=1, coalesce=True,
                misfire_grace_time=schedule.misfire_grace_hours * 3600, replace_existing=True),
        ]
        if self.settings.imap.idle:
            self._watcher = IdleWatcher(self.settings.imap, self.ctx.imap_tls,
                                        self.request_poll, name=account)
            self._watching = asyncio.create_task(self._watcher.run())

    async def end(self, grace: float) -> None:
        """Stop serving the account: no new poll, a running one gets ``grace`` seconds, IDLE
        is left; its sends are fenced by the lock whatever happens to the poll."""
        for job in self._jobs:
            with contextlib.suppress(Exception):  # already gone with the scheduler
                job.remove()
        self._jobs = []
        if self._watcher is not None:
            self._watcher.stop()
        await self.finish(grace)
        watching, self._watcher, self._watching = self._watching, None, None
        if watching is not None:
            # The watcher wakes within a second, leaves IDLE and logs out (or cuts the line).
            await asyncio.wait([watching], timeout=CHECK_SECONDS + STOP_SECONDS + 1)
            watching.cancel()

    def request_poll(self) -> None:
        """Poll as soon as possible, without waiting here (IDLE's ``on_news``)."""
        if self._waiting or self.stopping:
            return
        task = asyncio.create_task(self.poll_now())
        self._requests.add(task)
        task.add_done_callback(self._requests.discard)

    async def poll_now(self) -> None:
        """Run one poll, then the review email and digest checks; see the class docstring."""
        if self._waiting or self.stopping:
            return
        self._waiting = True
        try:
            await self._running.acquire()
        finally:
            self._waiting = False
        try:
            if not self.stopping:
                await self.job("poll", self._poll)
                await self.job("review email", lambda now: send_review_email(self.ctx, now))
                # Also catches a digest missed during downtime, or one whose send failed.
                await self.job("digest", self._digest)
        finally:
            self._running.release()

    async def digest_job(self) -> None:
        await self.job("digest", self._digest)

    async def job(self, name: str, step: Callable[[datetime], Awaitable[object]]) -> None:
        """Run ``step`` at the current time; log its failure in one sentence and go on."""
        from modbot.advice import explain

        try:
            self.lock.check()
            await step(datetime.now(UTC))
        except ModbotError as exc:
            log.error("%s%s failed: %s", self.label, name, explain(exc, self.settings))
        except Exception as exc:  # the daemon outlives any single failure
            log.error("%s%s failed unexpectedly: %s", self.label, name, type(exc).__name__)

    async def _poll(self, now: datetime) -> None:
        report = await self.poller.poll(now)
        log.info("%s%s", self.label, poll_line(report))

    async def _digest(self, now: datetime) -> None:
        await send_digest_if_due(self.ctx, now)

    async def finish(self, grace: float) -> None:
        """Start no new poll and let a running one end within ``grace`` seconds; then cancel
        polls IDLE asked for (the scheduler's shutdown cancels its own)."""
        self.stopping = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._running.acquire(), grace)
            self._running.release()
        for task in list(self._requests):
            task.cancel()
        await asyncio.gather(*self._requests, return_exceptions=True)
        if not self._running.locked():  # a poll cancelled mid-way has dropped it already
            with contextlib.suppress(ModbotError):
                await self.poller.close()


async def run_daemon(config: Config, stop: asyncio.Event | None = None) -> None:
    """Run until SIGTERM or SIGINT; each job logs its own failures and the loop goes on.

    Every account of the configuration is handled side by side: its own poll on the interval
    (and at once when IDLE reports new mail), its own digest, and its own lock. On SQLite the
    locks are taken at start and held for the daemon's life, so a second modbot for any of the
    accounts refuses to start. On PostgreSQL any number of daemons share the accounts: each
    serves those whose lock it holds, waits for the others, and takes over an account whose
    daemon died or hung (``modbot.standby``). One account that fails (a refused login, a silent
    server) never holds up another. systemd hears READY, WATCHDOG and STOPPING where it
    listens. Given ``stop``, the daemon ends when it is set instead of on a signal (to run it
    inside another program, or a test).
    """
    url = config.database.url
    if not shares_locks(url):
        with contextlib.ExitStack() as held:
            locks = [held.enter_context(acquire_account_lock(url, a.account))
                     for a in config.accounts]
            await _run(config, locks, None, stop)
        return
    session = LockSession(url)  # started once the accounts are loaded: see _run
    try:
        await _run(config, [session.lock(a.account) for a in config.accounts], session, stop)
    finally:
        await asyncio.to_thread(session.close)


async def _run(config: Config, locks: Sequence[AccountLock], session: LockSession | None,
               stop: asyncio.Event | None) -> None:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    accounts = config.accounts
    store = Store.open(config.database.url)  # [database] is shared by every account
    several = len(accounts) > 1
    inboxes = {a.account: _Inbox(Context.build(a, store_=store), lock,
                                 f"{a.account}: " if several else "")
               for a, lock in zip(accounts, locks, strict=True)}
    for inbox in inboxes.values():  # a broken template or directory stops the start
        inbox.ctx.load_all()
    loop = asyncio.get_running_loop()
    # Each account's poll holds at most one worker thread at a time; a silent server holds its
    # thread up to its timeout, so there must be one for every account and a few to spare.
    loop.set_default_executor(ThreadPoolExecutor(
        max_workers=max(min(32, (os.cpu_count() or 1) + 4), len(accounts) + 4)))
    if stop is None:
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    scheduler = AsyncIOScheduler(timezone=UTC)
    scheduler.start()

    async def begin(account: str) -> None:
        inboxes[account].begin(scheduler, config)

    async def end(account: str) -> None:
        await inboxes[account].end(GRACE_SECONDS)

    standby: Standby | None = None
    sharing: asyncio.Task[None] | None = None
    if session is not None:
        # Only now: a daemon counts as live from its lock session on, so one still loading
        # would lower the others' fair share without taking any account itself.
        await asyncio.to_thread(session.start)
    if session is None:
        for account in inboxes:
            await begin(account)
    else:
        standby = sharing_rounds = Standby(session, list(inboxes), begin, end)

        def halt() -> None:  # in the loop: no new poll for what is no longer held
            for account, inbox in inboxes.items():
                if not session.holds(account):
                    inbox.stopping = True
            sharing_rounds.lost()

        def lost() -> None:  # in the session's thread
            loop.call_soon_threadsafe(halt)

        session.on_lost = lost
        sharing = asyncio.create_task(sharing_rounds.run(stop))
    sdnotify.ready()
    keeper = asyncio.create_task(sdnotify.keep_alive(stop))
    log.info("%s", start_line(accounts, datetime.now(UTC)))
    if session is not None:
        log.info("sharing the accounts with any other daemon on this database; this one is "
                 "%s", session.name.removeprefix(DAEMON_PREFIX))
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        sdnotify.stopping()
        scheduler.pause()
        if standby is not None and sharing is not None:
            standby.lost()  # wakes its round at once
            await sharing  # stop is set: it ends every account it serves
        else:
            await asyncio.gather(*(end(account) for account in inboxes))
        scheduler.shutdown(wait=False)  # this cancels a poll still running after the grace
        await keeper
        store.close()
