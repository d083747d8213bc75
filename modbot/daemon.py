"""The long-running daemon: the poll job, the weekly digest job, and clean shutdown.

This is the only module that reads the clock for the pipeline. It wires the stages through
``poll.Poller`` and ``digest``, and it keeps running whatever one poll does: a failed poll is
recorded and logged in one sentence, and the next one runs on schedule.

The digest is sent exactly once per scheduled time, even across downtime: the store remembers
the last scheduled time a digest was sent for, and at start and at each firing modbot sends at
most one digest for the latest scheduled time that has passed (APScheduler's in-memory misfire
handling alone would silently skip a digest due while the daemon was down).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from modbot import digest, review, sdnotify
from modbot.config import DigestSettings, Settings
from modbot.errors import ConfigError, MaybeSentError, ModbotError
from modbot.lock import AccountLock, acquire_account_lock
from modbot.outbox import send_one
from modbot.poll import Context, Poller
from modbot.render import make_message_id
from modbot.store import Store

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
        data = digest.gather(ctx.store, settings, now)
        message = digest.build(data, ctx.templates, settings.counselor, now=now,
                               message_id=message_id)
        await send_one(message, settings.smtp, ctx.smtp_tls)
    except MaybeSentError:
        raise  # it may have arrived: the claim stays, so it is never sent twice
    except BaseException:
        ctx.store.digest_release(settings.account, key)
        raise
    log.info("weekly digest sent")
    return True


def resume(settings: Settings, now: datetime) -> bool:
    """End the pause a reached cap started, so automatic replies go out again.

    Returns False when replies were not paused. For ``modbot resume``; ``now`` is the caller's
    clock. Replies held while paused stay held for the counselor.
    """
    opened = Store.open(settings.database.url)
    try:
        return opened.resume(settings.account, now) > 0
    finally:
        opened.close()


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


async def run_daemon(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT; each job logs its own failures and the loop goes on.

    The account lock is held for the daemon's life, so a second modbot on the same database
    refuses to start; systemd hears READY, WATCHDOG and STOPPING where it listens.
    """
    with acquire_account_lock(settings.database.url, settings.account) as lock:
        await _run_locked(settings, lock)


async def _run_locked(settings: Settings, lock: AccountLock) -> None:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    ctx = Context.build(settings)
    poller = Poller(ctx)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def job(name: str, step: Callable[[datetime], Awaitable[object]]) -> None:
        try:
            lock.check()
            await step(datetime.now(UTC))
        except ModbotError as exc:
            log.error("%s failed: %s", name, exc)
        except Exception as exc:  # the daemon outlives any single failure
            log.error("%s failed unexpectedly: %s", name, type(exc).__name__)

    async def poll(now: datetime) -> None:
        report = await poller.poll(now)
        log.info("poll: %d new, %d LinkedIn, %d sent", report.new_messages,
                 report.candidates, len(report.sent))

    async def digest(now: datetime) -> None:
        await send_digest_if_due(ctx, now)

    async def after_poll() -> None:
        await job("poll", poll)
        await job("review email", lambda now: send_review_email(ctx, now))
        await job("digest", digest)  # catches a digest missed during downtime or a failed send

    async def digest_job() -> None:
        await job("digest", digest)

    schedule = settings.digest
    hour, minute = schedule.time.split(":")
    scheduler = AsyncIOScheduler(timezone=UTC)
    scheduler.add_job(
        after_poll, IntervalTrigger(seconds=settings.schedule.poll_seconds),
        id="poll", next_run_time=datetime.now(UTC), max_instances=1, coalesce=True,
        misfire_grace_time=settings.schedule.poll_seconds,
    )
    scheduler.add_job(
        digest_job,
        CronTrigger(day_of_week=schedule.day, hour=int(hour), minute=int(minute),
                    timezone=ZoneInfo(schedule.timezone)),
        id="digest", max_instances=1, coalesce=True,
        misfire_grace_time=schedule.misfire_grace_hours * 3600,
    )
    scheduler.start()
    sdnotify.ready()
    keeper = asyncio.create_task(sdnotify.keep_alive(stop))
    log.info("modbot running: polling %s every %ss", settings.imap.folder,
             settings.schedule.poll_seconds)
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        sdnotify.stopping()
        scheduler.shutdown(wait=False)
        await keeper
        ctx.store.close()
