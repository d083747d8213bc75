"""The rows a handled message is recorded as, built from its judgement alone."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from modbot.judging import Judgement, held
from modbot.model import (
    Action,
    Authenticity,
    Classification,
    Decision,
    Kind,
    Mode,
    Person,
    PolicyRule,
    Recipient,
    Verdict,
)
from modbot.recording import FIRST_STATUS, Place, Queued, answer_records, records, replies
from modbot.records import MessageRecord, OutboxStatus, ReplyRecord

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
PLACE = Place("counselor@imap", "INBOX", 7, 42, "k" * 64)
JORDAN = Recipient("Jordan Rivera", "jrivera@students.example.edu", "directory-csv:name")
PERSON = Person(name="Jordan Rivera", profile_url="https://www.linkedin.com/in/jordan",
                invitation_id="701")
AUTHENTIC = Authenticity(True, Verdict.AUTHENTIC, ("dkim=pass",))


def invitation(decision: Decision) -> Judgement:
    c = Classification(Kind.CONNECTION_INVITATION, "template_invitation", PERSON, None, ())
    return Judgement("<n1@linkedin.com>", AUTHENTIC, c, decision, "directory-csv:name")


def reply(mode: Mode) -> Judgement:
    return invitation(Decision(Action.REPLY, PolicyRule.REPLY, ("gets the standard reply",),
                               template="connection_invitation", recipient=JORDAN, mode=mode))


def test_message_row_holds_every_column() -> None:
    """A logged message becomes one row with its place, kind, person and decision, no reply."""
    j = invitation(Decision(Action.LOG, PolicyRule.PERSON_ALREADY_ANSWERED, ("answered",)))
    got = records(j, PLACE, NOW, reply_message_id=None, redirect_all_to=None)
    assert got.message == MessageRecord(
        account="counselor@imap", message_key="k" * 64, folder="INBOX", uidvalidity=7, uid=42,
        seen_at=NOW, kind="connection_invitation", authentic=True,
        classify_rule="template_invitation", person_name="Jordan Rivera",
        profile_url="https://www.linkedin.com/in/jordan", invitation_id="701",
        address_source="directory-csv:name", action="log",
        policy_rule="person-already-answered", reasons=("answered",), error=None)
    assert (got.reply, got.status, got.queued) == (None, None, None)
    assert not replies(j)


@pytest.mark.parametrize(("mode", "status"), [(Mode.AUTO, OutboxStatus.QUEUED),
                                              (Mode.REVIEW, OutboxStatus.REVIEW),
                                              (Mode.SHADOW, OutboxStatus.SHADOW)])
def test_reply_intent_starts_in_its_mode_status(mode: Mode, status: OutboxStatus) -> None:
    """A reply's intent carries the given Message-ID and starts in the store's status for its
    mode, and counts for the history facts (as a shadow reply in shadow mode)."""
    got = records(reply(mode), PLACE, NOW, reply_message_id="<r1@counsel.example.edu>",
                  redirect_all_to="test@counsel.example.edu")
    assert got.reply == ReplyRecord(
        message_id="<r1@counsel.example.edu>", template="connection_invitation",
        recipient_name="Jordan Rivera", recipient_email="jrivera@students.example.edu",
        redirected_to="test@counsel.example.edu", status=status, created_at=NOW)
    assert got.status == status == FIRST_STATUS[mode]
    assert got.queued == Queued("jrivera@students.example.edu",
                                "https://www.linkedin.com/in/jordan", "701", NOW,
                                shadow=mode is Mode.SHADOW)


def test_reply_without_message_id_is_refused() -> None:
    """A reply is never recorded without the Message-ID it will be sent with."""
    assert replies(reply(Mode.AUTO))
    with pytest.raises(ValueError, match="Message-ID"):
        records(reply(Mode.AUTO), PLACE, NOW, reply_message_id=None, redirect_all_to=None)


def test_classify_rule_is_cut_to_its_column() -> None:
    """A counselor's long rule name is cut to the 64 characters the column holds."""
    j = held(PolicyRule.PROCESSING_ERROR, "could not be processed", classified_by="r" * 80)
    got = records(j, PLACE, NOW, reply_message_id=None, redirect_all_to=None)
    assert got.message.classify_rule == "r" * 64
    assert got.message.error == "could not be processed"


@pytest.mark.parametrize(("acted", "action"), [(True, "log"), (False, "hold")])
def test_answer_to_modbot_is_noted_or_held(acted: bool, action: str) -> None:
    """The counselor's answer is recorded as mail that is not LinkedIn's: noted when acted on,
    held when ignored, with its findings as reasons."""
    got = answer_records(PLACE, NOW, acted=acted, reasons=("resolved 2 items",))
    assert got.message == MessageRecord(
        account="counselor@imap", message_key="k" * 64, folder="INBOX", uidvalidity=7, uid=42,
        seen_at=NOW, kind="not_linkedin", authentic=None, classify_rule="review-answer",
        person_name=None, profile_url=None, invitation_id=None, address_source=None,
        action=action, policy_rule="review-answer", reasons=("resolved 2 items",), error=None)
    assert got.reply is None
