"""The daemon's schedule (the latest digest time, across zones and downtime) and its start."""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from modbot.config import (
    CounselorSettings,
    DatabaseSettings,
    DigestSettings,
    ImapSettings,
    Settings,
    SmtpSettings,
    TemplateSettings,
)
from modbot.daemon import latest_digest_due, run_daemon
from modbot.errors import TemplateError


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
    shutil.copytree(Path(__file__).parent.parent / "config" / "templates", templates)
    reply = templates / "connection_invitation.j2"
    reply.write_text(reply.read_text(encoding="utf-8") + "{{ 1 | no_such_filter }}\n",
                     encoding="utf-8")
    settings = Settings(
        counselor=CounselorSettings(name="Career Services Counselor",
                                    email="counselor@counsel.example.edu",
                                    confidential_contact="Book through the portal."),
        imap=ImapSettings(host="127.0.0.1", port=9, username="nobody"),
        smtp=SmtpSettings(host="127.0.0.1", port=9),
        database=DatabaseSettings(url=f"sqlite:///{tmp_path / 'modbot.db'}"),
        templates=TemplateSettings(dir=templates),
    )
    with pytest.raises(TemplateError, match="no_such_filter"):
        await run_daemon(settings, stop=asyncio.Event())
