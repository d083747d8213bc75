"""Whole trials shared by the reliability tests and ``bench/soak.py``: set up a mailbox, break
something on the way, recover, and count what was lost, repeated or held.

Each trial takes fresh servers' handles and a fresh directory, and returns an ``Outcome``.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.policy import default as default_policy
from pathlib import Path

from sqlalchemy import select

from modbot import store
from modbot.errors import ModbotError
from modbot.poll import Context, Poller
from modbot.store import OutboxStatus, schema
from support import faults, servers

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
MAILBOX = (faults.JORDAN, faults.SAM, faults.PRIYA, faults.SPOOF, faults.NEWSLETTER)
LINKEDIN = (faults.JORDAN, faults.SAM, faults.PRIYA, faults.SPOOF)  # each must be recorded
REPLIES = 2  # Jordan's invitation and Sam's message are answered; Priya is held (no address)
# How often each step is reached by one poll of MAILBOX: the soak kills at a random occurrence.
OCCURRENCES = {"fetched": 1, "judged": 4, "recorded": 4, "marked": 1, "advanced": 1,
               "sending": 2, "during-send": 2, "sent": 2, "copied": 2}
CRASH_STEPS = tuple(OCCURRENCES)


@dataclass
class Outcome:
    """What a trial left behind, after recovery."""

    lost: int = 0  # LinkedIn notifications never recorded
    duplicates: int = 0  # messages an SMTP recipient received more than once
    sent: int = 0
    uncertain: int = 0  # replies held as "may have been sent"
    held: int = 0  # notifications held for the counselor
    unfinished: int = 0  # outbox rows still queued, sending or waiting to retry
    unmarked: int = 0  # LinkedIn notifications without the keyword
    recorded: int = 0  # notifications in the store
    statuses: dict[str, str] = field(default_factory=dict)  # reply Message-ID → status
    notes: list[str] = field(default_factory=list)

    def add(self, other: Outcome) -> None:
        for name in ("lost", "duplicates", "sent", "uncertain", "held", "unfinished",
                     "unmarked", "recorded"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.notes += other.notes


def message_keys(names: tuple[str, ...]) -> set[str]:
    keys = set()
    for name in names:
        parsed = email.message_from_bytes(faults.fixture(name), policy=default_policy)
        keys.add(store.message_key(str(parsed["Message-ID"]).strip(), b""))
    return keys


def measure(ctx: Context, imap_user: servers.ImapUser, smtp: servers.SmtpServer,
            expected: set[str], *, not_linkedin: int = 1) -> Outcome:
    """Count what the store, the SMTP server and the mailbox hold; ``not_linkedin`` messages of
    the folder are not LinkedIn's and carry no keyword."""
    outcome = Outcome()
    with ctx.store.engine.connect() as c:
        recorded = set(c.execute(select(schema.messages.c.message_key)).scalars())
        outcome.held = len(c.execute(select(schema.messages.c.id)
                                     .where(schema.messages.c.action == "hold")).all())
        rows = c.execute(select(schema.outbox.c.message_id, schema.outbox.c.status)).all()
    outcome.lost = len(expected - recorded)
    outcome.recorded = len(recorded)
    outcome.statuses = {message_id: status for message_id, status in rows}
    outcome.sent = sum(status == OutboxStatus.SENT for status in outcome.statuses.values())
    outcome.uncertain = sum(status == OutboxStatus.UNCERTAIN
                            for status in outcome.statuses.values())
    unfinished = (OutboxStatus.QUEUED, OutboxStatus.SENDING, OutboxStatus.RETRY)
    outcome.unfinished = sum(status in unfinished for status in outcome.statuses.values())
    outcome.duplicates = sum(count - 1 for count in faults.recipients_count(smtp).values())
    keyword = ctx.settings.imap.keyword
    flags = imap_user.flags(ctx.settings.imap.folder)
    outcome.unmarked = sum(keyword not in f for f in flags.values()) - not_linkedin
    return outcome


def crash_trial(tmp_path: Path, imap_user: servers.ImapUser, smtp: faults.KillingSmtpServer,
                ca_file: Path, step: str, occurrence: int = 1) -> Outcome:
    """Kill a poll with SIGKILL at ``step`` (its ``occurrence``-th time), restart, measure."""
    for name in MAILBOX:
        imap_user.append("INBOX", faults.fixture(name))
    config = faults.write_config(tmp_path, imap_user, smtp, ca_file)
    pid_file = tmp_path / "poll.pid"
    if step == "during-send":
        smtp.pid_file, smtp.occurrence = pid_file, occurrence
        result = faults.run_poll(config, NOW, imap_user.password, pid_file=pid_file)
    else:
        result = faults.run_poll(config, NOW, imap_user.password, crash_at=step,
                                 occurrence=occurrence)
    outcome = Outcome()
    if not faults.killed(result):
        outcome.notes.append(f"{step}#{occurrence}: not killed ({result.returncode}): "
                             f"{result.stdout.strip()} {result.stderr.strip()[-300:]}")
    smtp.pid_file = None
    ctx = faults.context_for(tmp_path, imap_user, smtp, ca_file)
    try:
        for minutes in (5, 10):  # the restart, then one more poll: nothing may change
            asyncio.run(Poller(ctx).poll(NOW + timedelta(minutes=minutes)))
        outcome.add(measure(ctx, imap_user, smtp, message_keys(LINKEDIN)))
        outcome.statuses = measure(ctx, imap_user, smtp, set()).statuses
    finally:
        ctx.store.close()
    return outcome


def cut_trial(tmp_path: Path, imap_user: servers.ImapUser, smtp: servers.SmtpServer,
              ca_file: Path, proxy: faults.CutProxy, cut_after: int) -> Outcome:
    """Poll through ``proxy`` cut after ``cut_after`` bytes, then poll directly; measure."""
    for name in MAILBOX:
        imap_user.append("INBOX", faults.fixture(name))
    through_proxy = faults.settings_for(tmp_path, imap_user, smtp, ca_file,
                                        imap={"port": proxy.port})
    proxy.cut_after = cut_after
    outcome = Outcome()
    ctx = Context.build(through_proxy, dkim_lookup=None)
    try:
        # The cut surfaces as one sentence (ModbotError); anything else fails the trial.
        with contextlib.suppress(ModbotError):
            asyncio.run(Poller(ctx).poll(NOW))
        # The same database, templates and TLS contexts; only the IMAP port differs.
        ctx.settings = faults.settings_for(tmp_path, imap_user, smtp, ca_file)
        for minutes in (5, 10):
            asyncio.run(Poller(ctx).poll(NOW + timedelta(minutes=minutes)))
        outcome.add(measure(ctx, imap_user, smtp, message_keys(LINKEDIN)))
    finally:
        ctx.store.close()
    return outcome


def full_session_bytes(tmp_path: Path, imap_user: servers.ImapUser, smtp: servers.SmtpServer,
                       ca_file: Path, proxy: faults.CutProxy) -> int:
    """How many bytes one clean poll of MAILBOX moves through ``proxy`` (a dry run)."""
    for name in MAILBOX:
        imap_user.append("INBOX", faults.fixture(name))
    proxy.cut_after = None
    ctx = faults.context_for(tmp_path, imap_user, smtp, ca_file, imap={"port": proxy.port})
    try:
        asyncio.run(Poller(ctx).poll(NOW))
    finally:
        ctx.store.close()
    return proxy.total


def random_cut(rng: random.Random, total: int) -> int:
    return rng.randint(1, max(total, 2))
