"""The weekly digest across downtime: down for 1 hour, 3 days or 9 days over the digest time,
modbot sends exactly one late digest when it is back, and never the same digest twice."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support import faults, servers

from modbot.daemon import latest_digest_due, send_digest_if_due
from modbot.errors import MaybeSentError, SendError
from modbot.poll import Context

pytestmark = pytest.mark.integration

INSTALLED = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)  # a Monday, after the 08:00 digest
DUE = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # the next Monday's digest
STEP = timedelta(minutes=30)  # how often the daemon checks (at every poll)


@pytest.fixture
def ctx(tmp_path: Path, imap_user: servers.ImapUser, killing_smtp: faults.KillingSmtpServer,
        ca_file: Path) -> Iterator[Context]:
    context = faults.context_for(tmp_path, imap_user, killing_smtp, ca_file)
    yield context
    context.store.close()


async def run_daemon(ctx: Context, start: datetime, end: datetime) -> list[datetime]:
    """Check for the digest every STEP from ``start`` until ``end``; when each one went out."""
    sent = []
    now = start
    while now < end:
        try:
            if await send_digest_if_due(ctx, now):
                sent.append(now)
        except SendError:
            pass  # logged by the daemon; the next check tries again
        now += STEP
    return sent


@pytest.mark.parametrize("downtime", [timedelta(hours=1), timedelta(days=3), timedelta(days=9)])
async def test_one_late_digest_after_downtime(
        downtime: timedelta, ctx: Context, killing_smtp: faults.KillingSmtpServer) -> None:
    """Down from 07:30 across the digest time: one digest at restart, none twice, and the next
    one on schedule."""
    down = DUE - timedelta(minutes=30)
    restart = down + downtime
    following = latest_digest_due(ctx.settings.digest, restart) + timedelta(days=7)
    assert await run_daemon(ctx, INSTALLED, down) == []
    assert await run_daemon(ctx, restart, following) == [restart]
    assert await run_daemon(ctx, following, following + timedelta(days=1)) == [following]
    assert len(killing_smtp.messages) == 2


async def test_failed_digest_is_tried_again_once(
        ctx: Context, killing_smtp: faults.KillingSmtpServer) -> None:
    """A 451 gives the digest back; the next check sends it, once."""
    await run_daemon(ctx, INSTALLED, DUE)
    killing_smtp.data_reply = "451 4.3.0 Try again later"
    assert await run_daemon(ctx, DUE, DUE + STEP) == []
    killing_smtp.data_reply = None
    assert await run_daemon(ctx, DUE + STEP, DUE + timedelta(days=2)) == [DUE + STEP]
    assert len(killing_smtp.messages) == 1


async def test_unconfirmed_digest_is_not_sent_again(
        ctx: Context, killing_smtp: faults.KillingSmtpServer) -> None:
    """The line dropped after DATA: the digest may have arrived, so it is not sent twice."""
    await run_daemon(ctx, INSTALLED, DUE)
    killing_smtp.drop_after_data = True
    with pytest.raises(MaybeSentError):
        await send_digest_if_due(ctx, DUE)
    killing_smtp.drop_after_data = False
    assert await run_daemon(ctx, DUE + STEP, DUE + timedelta(days=2)) == []
    assert len(killing_smtp.messages) == 1


async def test_two_daemons_send_one_digest(
        ctx: Context, killing_smtp: faults.KillingSmtpServer) -> None:
    """Two daemons on one database checking at the same moment: one digest goes out."""
    await run_daemon(ctx, INSTALLED, DUE)
    other = Context.build(ctx.settings, dkim_lookup=None)
    try:
        sent = await asyncio.gather(*(send_digest_if_due(c, DUE + STEP) for c in (ctx, other)))
    finally:
        other.store.close()
    assert sorted(sent) == [False, True]
    assert len(killing_smtp.messages) == 1
