"""Idempotent re-run: a second poll of an unchanged mailbox fetches nothing, decides nothing and
sends nothing. (UIDVALIDITY changes and untouched ``\\Seen`` flags are proven in
``test_end_to_end.py``.)"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from support import faults, servers, trials
from support.trials import NOW

from modbot.poll import Poller

pytestmark = pytest.mark.integration


async def test_second_poll_of_unchanged_mailbox_sends_nothing(
        tmp_path: Path, imap_user: servers.ImapUser, smtp_server: servers.SmtpServer,
        ca_file: Path) -> None:
    """The first poll answers twice; the second finds no new message and sends 0."""
    for name in trials.MAILBOX:
        imap_user.append("INBOX", faults.fixture(name))
    ctx = faults.context_for(tmp_path, imap_user, smtp_server, ca_file)
    first = await Poller(ctx).poll(NOW)
    flags = imap_user.flags("INBOX")
    second = await Poller(ctx).poll(NOW + timedelta(minutes=5))
    ctx.store.close()
    assert len(first.sent) == trials.REPLIES
    assert (second.new_messages, second.candidates, second.handled, second.sent) == (0, 0, [], [])
    assert len(smtp_server.messages) == trials.REPLIES
    assert imap_user.flags("INBOX") == flags
