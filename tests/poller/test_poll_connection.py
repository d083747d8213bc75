"""The daemon's poller on real servers: one IMAP connection kept between polls, replaced when
the server ends it, and a poll with nothing new that costs two small statements."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from support import servers
from support.faults import JORDAN, SAM, fixture, settings_for

from modbot.config import Account
from modbot.errors import MailboxError
from modbot.poll import KEEP_OPEN_FOR, Context, Poller
from modbot.store import schema

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.fixture
def settings(tmp_path: Path, imap_user: servers.ImapUser, smtp_server: servers.SmtpServer,
             ca_file: Path) -> Account:
    return settings_for(tmp_path, imap_user, smtp_server, ca_file)


@pytest.fixture
async def kept(settings: Account) -> AsyncIterator[Poller]:
    poller = Poller(Context.build(settings, dkim_lookup=None), keep_open=True)
    yield poller
    await poller.close()


def poll_rows(ctx: Context) -> list[dict[str, object]]:
    with ctx.store.transaction() as c:
        return [dict(row._mapping) for row in c.execute(select(schema.polls)
                                                        .order_by(schema.polls.c.id))]


async def test_one_connection_for_many_polls(kept: Poller, imap_user: servers.ImapUser,
                                             smtp_server: servers.SmtpServer) -> None:
    """Polls share one connection and still see mail that arrives between them."""
    await kept.poll(NOW)
    connection = kept.connection
    assert connection is not None
    for minute in range(1, 5):
        await kept.poll(NOW + timedelta(minutes=minute))
    imap_user.append("INBOX", fixture(JORDAN))
    report = await kept.poll(NOW + timedelta(minutes=5))
    assert report.new_messages == 1 and len(report.sent) == 1
    assert kept.connection is connection
    await kept.close()
    assert kept.connection is None


async def test_connection_closed_by_the_server_is_replaced(
        kept: Poller, imap_user: servers.ImapUser, dovecot: servers.Dovecot,
        smtp_server: servers.SmtpServer) -> None:
    """A kept connection that the server ended is replaced silently; nothing is missed."""
    await kept.poll(NOW)
    first = kept.connection
    dovecot.kick(imap_user)
    imap_user.append("INBOX", fixture(JORDAN))
    report = await kept.poll(NOW + timedelta(minutes=1))
    assert report.errors == [] and len(report.sent) == 1
    assert kept.connection is not first
    assert [m.recipients for m in smtp_server.messages] == [("jrivera@students.example.edu",)]


async def test_connection_unused_for_long_is_not_trusted(kept: Poller) -> None:
    await kept.poll(NOW)
    first = kept.connection
    await kept.poll(NOW + KEEP_OPEN_FOR / 2)
    assert kept.connection is first
    await kept.poll(NOW + KEEP_OPEN_FOR * 2)
    assert kept.connection is not first


async def test_uidvalidity_change_seen_on_a_kept_connection(
        tmp_path: Path, ca_file: Path, imap_user: servers.ImapUser,
        smtp_server: servers.SmtpServer) -> None:
    """The poller's remembered cursor never outlives the folder's UIDVALIDITY."""
    notices = settings_for(tmp_path, imap_user, smtp_server, ca_file,
                           imap={"folder": "Notices"})
    poller = Poller(Context.build(notices, dkim_lookup=None), keep_open=True)
    imap_user.append("Notices", fixture(JORDAN))
    await poller.poll(NOW)
    with imap_user.connect() as client:
        client.delete_folder("Notices")
    imap_user.append("Notices", fixture(JORDAN))  # the same message, in a new folder
    imap_user.append("Notices", fixture(SAM))
    await poller.poll(NOW + timedelta(minutes=5))
    await poller.close()
    recipients = [m.recipients[0] for m in smtp_server.messages]
    assert recipients.count("jrivera@students.example.edu") == 1
    assert len(recipients) == 2


async def test_quiet_polls_are_recorded_in_one_row_each(
        kept: Poller, imap_user: servers.ImapUser) -> None:
    """Every poll leaves a finished row; one with nothing to do starts and ends at once."""
    await kept.poll(NOW)
    imap_user.append("INBOX", fixture(JORDAN))
    await kept.poll(NOW + timedelta(minutes=1))
    await kept.poll(NOW + timedelta(minutes=2))
    rows = poll_rows(kept.ctx)
    assert [(r["ok"], r["new_messages"]) for r in rows] == [(True, 0), (True, 1), (True, 0)]
    assert all(r["finished_at"] is not None for r in rows)


async def test_failed_poll_forgets_the_cursor_and_the_connection(
        kept: Poller, imap_user: servers.ImapUser, dovecot: servers.Dovecot,
        smtp_server: servers.SmtpServer) -> None:
    """After a failure the next poll reconnects, reads the cursor from the store and looks
    for replies a crash may have left half-sent."""
    await kept.poll(NOW)
    good = kept.settings
    broken = good.model_copy(update={"imap": good.imap.model_copy(update={"folder": "Nope"})})
    kept.settings = broken
    with pytest.raises(MailboxError, match="Nope"):
        await kept.poll(NOW + timedelta(minutes=1))
    assert poll_rows(kept.ctx)[-1]["ok"] is False
    assert kept.connection is None
    kept.settings = good
    imap_user.append("INBOX", fixture(JORDAN))
    report = await kept.poll(NOW + timedelta(minutes=2))
    assert report.new_messages == 1 and len(report.sent) == 1
