"""The daemon's schedule (the latest digest time, across zones and downtime) and its start."""

from __future__ import annotations

import asyncio
import email
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support import configs, faults, servers

from modbot.config import (
    Account,
    Config,
    CounselorSettings,
    DigestSettings,
    ImapSettings,
    SmtpSettings,
    TemplateSettings,
)
from modbot.daemon import _Inbox, latest_digest_due, poll_line, run_daemon, start_line
from modbot.errors import TemplateError
from modbot.lock import AccountLock
from modbot.poll import Handled, PollReport


def test_latest_due_same_week() -> None:
    """On a Wednesday the latest Monday 08:00 digest is two days back."""
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # a Wednesday
    assert latest_digest_due(DigestSettings(), now) == datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def test_latest_due_before_time_on_the_day() -> None:
    """On Monday before 08:00 the latest digest is the previous Monday's."""
    now = datetime(2026, 11, 23, 7, 59, tzinfo=UTC)
    assert latest_digest_due(DigestSettings(), now) == datetime(2026, 11, 16, 8, 0, tzinfo=UTC)


def test_latest_due_in_time_zone() -> None:
    """The schedule is read in the configured time zone."""
    schedule = DigestSettings(day="fri", time="16:30", timezone="America/Chicago")
    now = datetime(2026, 11, 28, 0, 0, tzinfo=UTC)  # Friday 18:00 in Chicago
    assert latest_digest_due(schedule, now) == datetime(2026, 11, 27, 22, 30, tzinfo=UTC)


async def test_broken_template_stops_the_start(tmp_path: Path) -> None:
    """A template that names an unknown filter stops the daemon before it polls anything."""
    templates = tmp_path / "templates"
    shutil.copytree(Path(__file__).parents[2] / "config" / "templates", templates)
    reply = templates / "connection_invitation.j2"
    reply.write_text(reply.read_text(encoding="utf-8") + "{{ 1 | no_such_filter }}\n",
                     encoding="utf-8")
    settings = configs.account(tmp_path, ImapSettings(host="127.0.0.1", port=9, username="nobody"),
                               SmtpSettings(host="127.0.0.1", port=9),
                               templates=TemplateSettings(dir=templates))
    with pytest.raises(TemplateError, match="no_such_filter"):
        await run_daemon(Config((settings,)), stop=asyncio.Event())


def test_poll_line_says_what_a_poll_did_in_one_line() -> None:
    """A poll is one line: what was new, what LinkedIn sent and what was done with it."""
    report = PollReport(new_messages=3, candidates=2, sent=["<a@x>"], handled=[
        Handled(1, "connection_invitation", "reply", "r", ("x",), "A", "a@x", "sent"),
        Handled(2, "spoofed_linkedin", "hold", "r", ("x",), None, None, None)])
    assert poll_line(report) == "poll: 3 new, 2 from LinkedIn (1 answered, 1 held); 1 sent"
    assert poll_line(PollReport()) == "poll: nothing new"


def test_start_line_names_mode_accounts_and_next_digest(tmp_path: Path) -> None:
    """The start line names each account with its mode, how it is watched, and the next
    digest in the counselor's time zone."""
    settings = Account(
        counselor=CounselorSettings(name="C", email="counselor@counsel.example.edu",
                                    confidential_contact="x"),
        imap=ImapSettings(host="imap.counsel.example.edu", username="counselor"),
        smtp=SmtpSettings(host="smtp.counsel.example.edu"),
        digest=DigestSettings(day="fri", time="16:30", timezone="America/Chicago"))
    line = start_line([settings], datetime(2026, 11, 25, 12, 0, tzinfo=UTC))
    assert "started for counselor@imap.counsel.example.edu (shadow mode, INBOX)" in line
    assert "polling every 300 s and at once when IDLE reports new mail" in line
    assert line.endswith("next digest Fri 2026-11-27 16:30 CST")


@pytest.mark.integration
def test_daemon_logs_one_line_per_poll(tmp_path: Path, ca_file: Path,
                                       imap_user: servers.ImapUser,
                                       smtp_server: servers.SmtpServer) -> None:
    """`modbot run` at INFO says how it started, then one line per poll and nothing from the
    scheduler; SIGTERM stops it."""
    imap_user.append("INBOX", faults.fixture(faults.JORDAN))
    config = faults.write_config(tmp_path, imap_user, smtp_server, ca_file)
    env = {**os.environ, "MODBOT_IMAP_PASSWORD": imap_user.password}
    daemon = subprocess.Popen([sys.executable, "-m", "modbot", "--config", str(config), "run"],
                              stderr=subprocess.PIPE, text=True, env=env)
    lines: list[str] = []
    try:
        assert daemon.stderr is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = daemon.stderr.readline()
            lines.append(line)
            if "modbot.daemon: poll:" in line:
                break
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, rest = daemon.communicate(timeout=30)
    lines += rest.splitlines()
    text = "\n".join(lines)
    assert daemon.returncode == 0, text
    start = next(line for line in lines if "started for" in line)
    assert f"{imap_user.username}@127.0.0.1 (auto mode, INBOX)" in start
    assert "next digest Mon " in start
    polls = [line for line in lines if "modbot.daemon: poll:" in line]
    assert "1 new, 1 from LinkedIn (1 answered); 1 sent" in polls[0]
    assert all(line.endswith("poll: nothing new") for line in polls[1:])
    assert "apscheduler" not in text and "Running job" not in text


@pytest.mark.integration
async def test_a_poll_of_several_messages_logs_one_info_line(
        tmp_path: Path, ca_file: Path, imap_user: servers.ImapUser,
        smtp_server: servers.SmtpServer, caplog: pytest.LogCaptureFixture) -> None:
    """The daemon's poll of five messages writes one line at INFO; each message's line is at
    DEBUG, naming its number, kind and action but never its subject or sender."""
    for name in (faults.JORDAN, faults.SAM, faults.PRIYA, faults.SPOOF, faults.NEWSLETTER):
        imap_user.append("INBOX", faults.fixture(name))
    settings = faults.settings_for(tmp_path, imap_user, smtp_server, ca_file)
    ctx = configs.poll_context(settings, ca_file)
    inbox = _Inbox(ctx, AccountLock(settings.account), "")
    caplog.set_level(logging.DEBUG)
    try:
        await inbox.job("poll", inbox._poll)
    finally:
        await inbox.poller.close()
        ctx.store.close()
    info = [r.getMessage() for r in caplog.records
            if r.levelno >= logging.INFO and r.name.startswith("modbot")]
    assert info == ["poll: 5 new, 4 from LinkedIn (2 answered, 2 held); 2 sent"], info
    per_message = [r.getMessage() for r in caplog.records
                   if r.name == "modbot.poll" and r.getMessage().startswith("uid ")]
    assert len(per_message) == 4 and all(r.levelno == logging.DEBUG for r in caplog.records
                                         if r.getMessage().startswith("uid "))
    for name in (faults.JORDAN, faults.SAM, faults.PRIYA, faults.SPOOF, faults.NEWSLETTER):
        parsed = email.message_from_bytes(faults.fixture(name))
        for line in per_message:
            assert str(parsed["Subject"]) not in line and str(parsed["From"]) not in line
