"""SMTP answers at RCPT and at the end of DATA: temporary ones retried with a bounded backoff,
permanent ones tried once and held, a line dropped after DATA held as "may have been sent"."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from support import faults, servers
from support.trials import NOW

from modbot import store
from modbot.delivery import MAX_SEND_ATTEMPTS, backoff
from modbot.poll import Context, Poller
from modbot.store import OutboxStatus, schema

pytestmark = pytest.mark.integration

TEMPORARY = ("421 4.3.2 Service shutting down", "450 4.2.1 Mailbox busy",
             "451 4.3.0 Local error", "452 4.2.2 Insufficient storage")
PERMANENT = ("550 5.1.1 No such user", "552 5.2.2 Mailbox full",
             "553 5.1.3 Bad address syntax", "554 5.7.1 Rejected")


@pytest.fixture
def ctx(tmp_path: Path, imap_user: servers.ImapUser, killing_smtp: faults.KillingSmtpServer,
        ca_file: Path) -> Iterator[Context]:
    imap_user.append("INBOX", faults.fixture(faults.JORDAN))
    context = faults.context_for(tmp_path, imap_user, killing_smtp, ca_file)
    yield context
    context.store.close()


def answer(killing_smtp: faults.KillingSmtpServer, stage: str, reply: str | None) -> None:
    if stage == "rcpt":
        killing_smtp.rcpt_reply = reply
    else:
        killing_smtp.data_reply = reply


def attempts(killing_smtp: faults.KillingSmtpServer, stage: str) -> int:
    return killing_smtp.rcpt_calls if stage == "rcpt" else killing_smtp.data_calls


def the_reply(ctx: Context) -> store.OutboxItem:
    statuses = (OutboxStatus.QUEUED, OutboxStatus.RETRY, OutboxStatus.FAILED, OutboxStatus.SENT,
                OutboxStatus.UNCERTAIN)
    (item,) = [i for status in statuses for i in ctx.store.items(ctx.settings.account, status)]
    return item


def next_attempt(ctx: Context) -> datetime:
    with ctx.store.engine.connect() as c:
        value: datetime = c.execute(schema.outbox.select()).one().next_attempt_at
    return value


@pytest.mark.parametrize("stage", ["rcpt", "data"])
@pytest.mark.parametrize("reply", TEMPORARY)
async def test_temporary_answer_is_retried_with_backoff_then_held(
        reply: str, stage: str, ctx: Context, killing_smtp: faults.KillingSmtpServer) -> None:
    """A 4xx that never ends is tried MAX_SEND_ATTEMPTS times, further apart each time, then
    held as failed and never tried again."""
    answer(killing_smtp, stage, reply)
    now = NOW
    waits = []
    for attempt in range(1, MAX_SEND_ATTEMPTS + 1):
        await Poller(ctx).poll(now)
        item = the_reply(ctx)
        assert item.attempts == attempt
        assert attempts(killing_smtp, stage) == attempt
        if attempt < MAX_SEND_ATTEMPTS:
            assert item.status == OutboxStatus.RETRY
            waits.append(next_attempt(ctx) - now)
            await Poller(ctx).poll(now + waits[-1] - timedelta(seconds=1))  # not yet due
            assert attempts(killing_smtp, stage) == attempt
            now += waits[-1]
    assert waits == [backoff(n) for n in range(1, MAX_SEND_ATTEMPTS)]
    assert the_reply(ctx).status == OutboxStatus.FAILED
    await Poller(ctx).poll(now + timedelta(days=2))
    assert attempts(killing_smtp, stage) == MAX_SEND_ATTEMPTS
    assert killing_smtp.messages == []


@pytest.mark.parametrize("stage", ["rcpt", "data"])
@pytest.mark.parametrize("reply", TEMPORARY)
async def test_temporary_answer_then_delivered_once(
        reply: str, stage: str, ctx: Context, killing_smtp: faults.KillingSmtpServer) -> None:
    """After two 4xx answers the server recovers: the reply goes out exactly once."""
    answer(killing_smtp, stage, reply)
    await Poller(ctx).poll(NOW)
    await Poller(ctx).poll(NOW + backoff(1))
    answer(killing_smtp, stage, None)
    for hours in (1, 2, 3):
        await Poller(ctx).poll(NOW + timedelta(hours=hours))
    assert len(killing_smtp.messages) == 1
    assert the_reply(ctx).status == OutboxStatus.SENT


@pytest.mark.parametrize("stage", ["rcpt", "data"])
@pytest.mark.parametrize("reply", PERMANENT)
async def test_permanent_answer_is_tried_once_and_held(
        reply: str, stage: str, ctx: Context, killing_smtp: faults.KillingSmtpServer) -> None:
    """A 5xx is one attempt: the reply is held as failed, with the code, for the counselor."""
    answer(killing_smtp, stage, reply)
    for hours in (0, 1, 24):
        await Poller(ctx).poll(NOW + timedelta(hours=hours))
    item = the_reply(ctx)
    assert (item.status, item.attempts, attempts(killing_smtp, stage)) == (
        OutboxStatus.FAILED, 1, 1)
    assert killing_smtp.messages == []
    (row,) = [r for r in ctx.store.open_items(ctx.settings.account)
              if r.outbox_status == OutboxStatus.FAILED]
    assert reply[:3] in (row.last_error or "")


async def test_line_dropped_after_data_is_never_resent(
        ctx: Context, killing_smtp: faults.KillingSmtpServer) -> None:
    """The RFC 1047 window: the server kept the reply and hung up; it is held, not resent."""
    killing_smtp.drop_after_data = True
    for hours in (0, 1, 24):
        await Poller(ctx).poll(NOW + timedelta(hours=hours))
    assert len(killing_smtp.messages) == 1
    assert the_reply(ctx).status == OutboxStatus.UNCERTAIN
    assert killing_smtp.data_calls == 1
