"""What the store records for one handled message: the rows, built from a judgement.

Pure: a ``Judgement`` (or the outcome of the counselor's answer to modbot's own mail) and the
few values that place it (account, folder, UIDVALIDITY, UID, key, ``now``, the Message-ID a
reply will carry) go in; the typed records ``Store.record`` takes come out
(``modbot.records``), with the reply's first outbox status and what the history facts count
of it. This is the one place a message and its reply intent are turned into records. It
must never touch the database, the network or the clock, nor make up a Message-ID itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from modbot.model import Action, Kind, Mode, PolicyRule
from modbot.records import MessageRecord, OutboxStatus, ReplyRecord

if TYPE_CHECKING:
    from modbot.judging import Judgement

# The outbox status a new reply starts in, by the mode it is made in: sent by the poll,
# waiting for the counselor's approval, or recorded only (the store's QUEUED, REVIEW, SHADOW).
FIRST_STATUS = {Mode.AUTO: OutboxStatus.QUEUED, Mode.REVIEW: OutboxStatus.REVIEW,
                Mode.SHADOW: OutboxStatus.SHADOW}


@dataclass(frozen=True)
class Place:
    """Where a message was found, and under which key the store knows it."""

    account: str
    folder: str
    uidvalidity: int
    uid: int
    key: str


@dataclass(frozen=True)
class Queued:
    """A reply just recorded, as the history facts count it (a ``model.AnsweredReply``)."""

    email: str
    profile_url: str | None
    invitation_id: str | None
    created_at: datetime
    shadow: bool = False


@dataclass(frozen=True)
class Records:
    """The message row and reply intent for ``Store.record``, and what they mean for the poll."""

    message: MessageRecord
    reply: ReplyRecord | None = None
    status: OutboxStatus | None = None  # the reply's first outbox status
    queued: Queued | None = None  # the reply, for the history facts of the rest of the poll


def replies(j: Judgement) -> bool:
    """Whether recording ``j`` queues a reply, which then needs its own Message-ID."""
    return j.decision.action is Action.REPLY and j.decision.recipient is not None


def records(j: Judgement, place: Place, now: datetime, *, reply_message_id: str | None,
            redirect_all_to: str | None) -> Records:
    """The rows that record ``j``; ``reply_message_id`` is required when ``replies(j)``."""
    c, d = j.classification, j.decision
    person = c.person
    message = MessageRecord(
        account=place.account, message_key=place.key, folder=place.folder,
        uidvalidity=place.uidvalidity, uid=place.uid, seen_at=now, kind=c.kind.value,
        authentic=j.authenticity.authentic, classify_rule=c.rule[:64],
        person_name=person.name, profile_url=person.profile_url,
        invitation_id=person.invitation_id, address_source=j.address_source,
        action=d.action.value, policy_rule=d.rule, reasons=tuple(d.reasons), error=j.error)
    if not replies(j):
        return Records(message)
    assert d.recipient is not None
    if reply_message_id is None:
        raise ValueError("a reply is recorded with the Message-ID it will carry")
    status = FIRST_STATUS[d.mode]
    reply = ReplyRecord(
        message_id=reply_message_id, template=d.template or c.kind.value,
        recipient_name=d.recipient.name, recipient_email=d.recipient.email,
        redirected_to=redirect_all_to, status=status, created_at=now)
    queued = Queued(d.recipient.email, person.profile_url, person.invitation_id, now,
                    shadow=d.mode is Mode.SHADOW)
    return Records(message, reply, status, queued)


def answer_records(place: Place, now: datetime, *, acted: bool,
                   reasons: tuple[str, ...]) -> Records:
    """The row that records the counselor's answer to a review email, digest or pause alert:
    noted when it was acted on, held for the counselor when it was ignored."""
    action = Action.LOG if acted else Action.HOLD
    return Records(MessageRecord(
        account=place.account, message_key=place.key, folder=place.folder,
        uidvalidity=place.uidvalidity, uid=place.uid, seen_at=now,
        kind=Kind.NOT_LINKEDIN.value, authentic=None,
        classify_rule=PolicyRule.REVIEW_ANSWER.value, person_name=None, profile_url=None,
        invitation_id=None, address_source=None, action=action.value,
        policy_rule=PolicyRule.REVIEW_ANSWER.value, reasons=tuple(reasons), error=None))
