"""Store records for tests: a recorded invitation and its reply, with fields overridable."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from modbot.store import MessageRecord, OutboxStatus, ReplyRecord

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def message_row(key: str, account: str = "counselor@imap", **overrides: Any) -> MessageRecord:
    """The record of an answered invitation from Jordan Rivera."""
    if "reasons" in overrides:
        overrides["reasons"] = tuple(overrides["reasons"])
    return replace(MessageRecord(
        account=account, message_key=key, folder="INBOX", uidvalidity=1, uid=1, seen_at=NOW,
        kind="connection_invitation", authentic=True, classify_rule="template-key",
        person_name="Jordan Rivera", profile_url=None, invitation_id="701",
        address_source="directory-csv:name", action="reply", policy_rule="reply",
        reasons=("because",), error=None), **overrides)


def reply_row(message_id: str, status: OutboxStatus = OutboxStatus.QUEUED,
              **overrides: Any) -> ReplyRecord:
    """The outbox record of a reply to that invitation."""
    return replace(ReplyRecord(
        message_id=message_id, template="connection_invitation", recipient_name="Jordan Rivera",
        recipient_email="JRivera@students.example.edu", redirected_to=None, status=status,
        created_at=NOW), **overrides)
