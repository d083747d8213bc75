"""The digest schedule: the latest scheduled time, across zones and downtime."""

from __future__ import annotations

from datetime import UTC, datetime

from modbot.config import DigestSettings
from modbot.daemon import latest_digest_due


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
