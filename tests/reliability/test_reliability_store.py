"""The database refuses to write: another process holds the write lock, or the disk is full.

The poll fails cleanly with one ``StoreError`` sentence, nothing is ever sent without its outbox
row, and the next poll, once the database writes again, does the work exactly once.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, select
from support import faults, servers, trials
from support.trials import NOW

from modbot.errors import StoreError
from modbot.poll import Context, Poller
from modbot.store import OutboxStatus, Store, schema

pytestmark = pytest.mark.integration

BUSY_TIMEOUT = 0.2


def build(tmp_path: Path, imap_user: servers.ImapUser, smtp: servers.SmtpServer,
          ca_file: Path, database: Path) -> Context:
    for name in trials.MAILBOX:
        imap_user.append("INBOX", faults.fixture(name))
    settings = faults.settings_for(tmp_path, imap_user, smtp, ca_file)
    settings = settings.model_copy(update={"database": settings.database.model_copy(
        update={"url": f"sqlite:///{database}"})})
    opened = Store.open(settings.database.url, busy_timeout=BUSY_TIMEOUT)
    return Context.build(settings, store_=opened, dkim_lookup=None)


def at_step(step: str, action: Callable[[], None]) -> Callable[[str], None]:
    done = False

    def checkpoint(reached: str) -> None:
        nonlocal done
        if reached == step and not done:
            done = True
            action()

    return checkpoint


def outbox_rows(ctx: Context) -> list[str]:
    with ctx.store.engine.connect() as c:
        return list(c.execute(select(schema.outbox.c.status)).scalars())


async def recover(ctx: Context, user: servers.ImapUser, smtp: servers.SmtpServer) -> None:
    """Two clean polls; then every reply went out once and every notification is recorded."""
    for minutes in (5, 10):
        await Poller(ctx).poll(NOW + timedelta(minutes=minutes))
    outcome = trials.measure(ctx, user, smtp, trials.message_keys(trials.LINKEDIN))
    assert (outcome.lost, outcome.duplicates, outcome.unfinished) == (0, 0, 0)
    assert outcome.sent == trials.REPLIES


# Where the lock is taken, and what must hold at that moment.
LOCK_STEPS = ("start", "judged", "advanced", "copied")


@pytest.mark.parametrize("step", LOCK_STEPS)
async def test_write_lock_held_elsewhere_fails_cleanly_then_recovers(
        step: str, tmp_path: Path, imap_user: servers.ImapUser, smtp_server: servers.SmtpServer,
        ca_file: Path) -> None:
    """Another process's BEGIN IMMEDIATE makes the poll fail with StoreError; nothing goes out
    without its row; after the lock is gone the next poll finishes the work once."""
    database = tmp_path / "modbot.db"
    ctx = build(tmp_path, imap_user, smtp_server, ca_file, database)
    with contextlib.ExitStack() as stack:
        def lock() -> None:
            stack.enter_context(faults.hold_write_lock(database))

        if step == "start":
            lock()
        with pytest.raises(StoreError, match="database"):
            await Poller(ctx, checkpoint=at_step(step, lock)).poll(NOW)
        statuses = outbox_rows(ctx)
        assert len(smtp_server.messages) <= statuses.count(OutboxStatus.SENDING)
    await recover(ctx, imap_user, smtp_server)
    ctx.store.close()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path | None]:
    """A 1 MB tmpfs (None when this machine cannot mount one: then SQLite's own page limit)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                             capture_output=True, check=False).returncode == 0
    if not mounted and os.environ.get("CI"):
        pytest.fail("cannot mount a tmpfs for the disk-full test (needs root)")
    yield mount if mounted else None
    if mounted:
        subprocess.run(["umount", "--lazy", str(mount)], check=False)


def fill(directory: Path) -> Path:
    """Write until the filesystem is full; returns the filler file."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        for size in (65536, 512, 1):
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size):
                    pass
    finally:
        os.close(fd)
    return filler


@pytest.mark.parametrize("step", ["judged", "advanced"])
async def test_disk_full_fails_cleanly_then_recovers(
        step: str, tmp_path: Path, imap_user: servers.ImapUser, smtp_server: servers.SmtpServer,
        ca_file: Path, small_disk: Path | None) -> None:
    """A full filesystem under the database fails the poll with StoreError and sends nothing;
    freed space and the next poll finish the work once."""
    directory = small_disk or tmp_path
    ctx = build(tmp_path, imap_user, smtp_server, ca_file, directory / "modbot.db")
    filler: list[Path] = []
    if small_disk is None:  # the same refusal, from SQLite's page limit instead of the disk
        limit = {"pages": 2**30}

        @event.listens_for(ctx.store.engine, "connect")
        def _limit(dbapi_connection: object, _record: object) -> None:
            dbapi_connection.execute(f"PRAGMA max_page_count={limit['pages']}")  # type: ignore[attr-defined]

        def full() -> None:
            with ctx.store.engine.connect() as c:
                limit["pages"] = int(c.exec_driver_sql("PRAGMA page_count").scalar_one())
            ctx.store.engine.dispose()
    else:
        def full() -> None:
            filler.append(fill(small_disk))

    try:
        with pytest.raises(StoreError):
            await Poller(ctx, checkpoint=at_step(step, full)).poll(NOW)
        assert smtp_server.messages == []
        if small_disk is None:
            limit["pages"] = 2**30
            ctx.store.engine.dispose()
        else:
            filler[0].unlink()
        await recover(ctx, imap_user, smtp_server)
    finally:
        ctx.store.close()
