"""Servers that accept a connection and then never answer: the poll gives up within its timeout,
sends nothing twice, and the next poll against a working server does everything."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
from support import faults, servers
from support.trials import NOW

from modbot.errors import MailboxError
from modbot.poll import Poller
from modbot.store import OutboxStatus

pytestmark = pytest.mark.integration

TIMEOUT = 1.0
SLACK = 3.0  # TLS setup, Dovecot and a loaded CI machine


async def test_silent_imap_server_gives_up_then_next_poll_works(
        tmp_path: Path, imap_user: servers.ImapUser, killing_smtp: faults.KillingSmtpServer,
        ca_file: Path, silent_server: servers.SilentServer) -> None:
    """An IMAP server that never greets fails the poll within its timeout; then all is well."""
    imap_user.append("INBOX", faults.fixture(faults.JORDAN))
    stalled = faults.context_for(tmp_path, imap_user, killing_smtp, ca_file,
                                 imap={"port": silent_server.port, "timeout_seconds": TIMEOUT})
    started = time.monotonic()
    with pytest.raises(MailboxError, match="no answer within"):
        await Poller(stalled).poll(NOW)
    assert time.monotonic() - started < TIMEOUT + SLACK
    stalled.store.close()
    working = faults.context_for(tmp_path, imap_user, killing_smtp, ca_file)
    await Poller(working).poll(NOW + timedelta(minutes=5))
    assert len(killing_smtp.messages) == 1
    working.store.close()


async def test_imap_stalling_mid_fetch_gives_up_then_next_poll_works(
        tmp_path: Path, imap_user: servers.ImapUser, killing_smtp: faults.KillingSmtpServer,
        ca_file: Path, dovecot: servers.Dovecot) -> None:
    """Dovecot going silent in the middle of the session fails the poll within its timeout."""
    for name in (faults.JORDAN, faults.SAM):
        imap_user.append("INBOX", faults.fixture(name))
    proxy = faults.CutProxy((dovecot.host, dovecot.imaps_port))
    proxy.cut_after, proxy.stall = 12_000, True  # past the login, inside the FETCH answers
    try:
        stalled = faults.context_for(tmp_path, imap_user, killing_smtp, ca_file,
                                     imap={"port": proxy.port, "timeout_seconds": TIMEOUT})
        started = time.monotonic()
        with pytest.raises(MailboxError):
            await Poller(stalled).poll(NOW)
        assert time.monotonic() - started < TIMEOUT + SLACK
        assert proxy.cuts == 1
        stalled.store.close()
    finally:
        proxy.close()
    working = faults.context_for(tmp_path, imap_user, killing_smtp, ca_file)
    await Poller(working).poll(NOW + timedelta(minutes=5))
    assert sorted(faults.recipients_count(killing_smtp).values()) == [1, 1]
    working.store.close()


async def test_silent_smtp_server_postpones_then_next_poll_sends(
        tmp_path: Path, imap_user: servers.ImapUser, killing_smtp: faults.KillingSmtpServer,
        ca_file: Path, silent_server: servers.SilentServer) -> None:
    """An SMTP server that never greets: the poll finishes within the timeout, the reply waits
    queued, and the next poll to a working server sends it once."""
    imap_user.append("INBOX", faults.fixture(faults.JORDAN))
    stalled = faults.context_for(tmp_path, imap_user, killing_smtp, ca_file,
                                 smtp_changes={"port": silent_server.port,
                                               "timeout_seconds": TIMEOUT})
    started = time.monotonic()
    report = await Poller(stalled).poll(NOW)
    assert time.monotonic() - started < TIMEOUT + SLACK
    assert any("no answer within" in error for error in report.errors)
    assert len(stalled.store.items(stalled.settings.account, OutboxStatus.QUEUED)) == 1
    stalled.store.close()
    working = faults.context_for(tmp_path, imap_user, killing_smtp, ca_file)
    await Poller(working).poll(NOW + timedelta(minutes=5))
    await Poller(working).poll(NOW + timedelta(minutes=10))
    assert len(killing_smtp.messages) == 1
    working.store.close()


async def test_smtp_stalling_after_data_is_held_never_resent(
        tmp_path: Path, imap_user: servers.ImapUser, killing_smtp: faults.KillingSmtpServer,
        ca_file: Path) -> None:
    """A server that takes the message and never answers: given up within the timeout, held as
    "may have been sent", and not sent again when the server is well."""
    imap_user.append("INBOX", faults.fixture(faults.JORDAN))
    killing_smtp.stall_data = TIMEOUT + 2
    ctx = faults.context_for(tmp_path, imap_user, killing_smtp, ca_file,
                             smtp_changes={"timeout_seconds": TIMEOUT})
    started = time.monotonic()
    await Poller(ctx).poll(NOW)
    assert time.monotonic() - started < TIMEOUT + SLACK
    killing_smtp.stall_data = 0
    await Poller(ctx).poll(NOW + timedelta(hours=1))
    assert killing_smtp.data_calls == 1
    held = ctx.store.items(ctx.settings.account, OutboxStatus.UNCERTAIN)
    assert [i.status for i in held] == [OutboxStatus.UNCERTAIN]
    ctx.store.close()
