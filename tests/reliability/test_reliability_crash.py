"""Crash anywhere: a poll killed with SIGKILL at any step loses nothing and repeats nothing.

Each test runs the real poll in a child process (``support/poll_driver.py``) that kills itself at
one step, or that the SMTP server kills while the message is in flight; then the poll restarts
in a fresh process state against the same database and mailbox. ``bench/soak.py`` runs the same
trial ten times per step at random occurrences.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support import faults, servers, trials

from modbot.store import OutboxStatus

pytestmark = pytest.mark.integration

# The reply the poll was handling when it died ends as: sent (never repeated), held as "may have
# been sent", or sent after the restart. Before "sending" nothing reached the SMTP server.
SENT, UNCERTAIN = OutboxStatus.SENT, OutboxStatus.UNCERTAIN
RESOLVED_AS = {
    "fetched": SENT, "judged": SENT, "recorded": SENT, "marked": SENT, "advanced": SENT,
    "sending": UNCERTAIN, "during-send": UNCERTAIN, "sent": UNCERTAIN, "copied": SENT,
}


@pytest.mark.parametrize("step", trials.CRASH_STEPS)
def test_crash_at_step_loses_and_repeats_nothing(
        step: str, tmp_path: Path, imap_user: servers.ImapUser,
        killing_smtp: faults.KillingSmtpServer, ca_file: Path) -> None:
    """Killed at this step and restarted: every notification recorded, no reply twice."""
    outcome = trials.crash_trial(tmp_path, imap_user, killing_smtp, ca_file, step)
    assert outcome.notes == []
    assert outcome.lost == 0
    assert outcome.duplicates == 0
    assert outcome.unfinished == 0
    assert outcome.unmarked == 0
    first = next(iter(outcome.statuses.values()))  # the reply in flight when the poll died
    assert first == RESOLVED_AS[step]
    assert len(outcome.statuses) == trials.REPLIES
    assert sum(faults.recipients_count(killing_smtp).values()) == (
        trials.REPLIES - (step == "sending"))

