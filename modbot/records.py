"""What goes into the store and what comes out of it, as typed frozen values.

Every other module hands the store a ``MessageRecord`` and a ``ReplyRecord`` and reads back
``OutboxItem``, ``Item``, ``PollRecord`` and the rest: no module outside the store package spells
a column name or a status string. A new outbox column is a new field of ``ReplyRecord`` without
a default, so every place that builds one and misses it is a type error.

Plain values only: this module must never import SQLAlchemy or touch a database.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any


class OutboxStatus(enum.StrEnum):
    """Where a reply stands. The values are in the database: never change one.

    A row is written before anything is sent (``queued``), marked ``sending`` in its own
    transaction just before the SMTP call, and ``sent`` right after. A row found in ``sending``
    at start-up crashed in between: it is reconciled from the Sent folder or held as
    ``uncertain``.
    """

    QUEUED = "queued"
    REVIEW = "review"  # waits for the counselor's approval
    SHADOW = "shadow"  # decided in shadow mode: recorded, never sent
    SENDING = "sending"
    SENT = "sent"
    RETRY = "failed_temporary"  # a 4xx or a lost connection: tried again after a backoff
    FAILED = "failed"  # a 5xx: held for the counselor
    UNCERTAIN = "uncertain"  # may have been sent: held, never sent again
    REJECTED = "rejected"  # the counselor said no


# The statuses of a reply that counts as made: for the caps, the person window, the invitation.
COUNTS_AS_REPLIED = (OutboxStatus.QUEUED, OutboxStatus.REVIEW, OutboxStatus.SENDING,
                     OutboxStatus.SENT, OutboxStatus.RETRY, OutboxStatus.UNCERTAIN)


def message_key(message_id: str | None, header_bytes: bytes) -> str:
    """A stable, non-reversible key: the Message-ID's hash, else the header block's."""
    basis = message_id.strip().lower().encode() if message_id else header_bytes
    return hashlib.sha256(basis).hexdigest()


@dataclass(frozen=True)
class MessageRecord:
    """A handled message and its decision, as the poll records it: never a body or subject."""

    account: str
    message_key: str  # ``message_key()`` of its Message-ID
    folder: str
    uidvalidity: int
    uid: int
    seen_at: datetime
    kind: str  # a ``Kind`` value
    authentic: bool | None
    classify_rule: str
    person_name: str | None
    profile_url: str | None
    invitation_id: str | None
    address_source: str | None
    action: str  # an ``Action`` value
    policy_rule: str
    reasons: tuple[str, ...]  # one sentence each; the first is the policy's own
    error: str | None


@dataclass(frozen=True)
class ReplyRecord:
    """A reply intent, recorded with its message before anything is sent."""

    message_id: str  # fixed now, so that the Sent folder can tell whether it went out
    template: str
    recipient_name: str | None
    recipient_email: str
    redirected_to: str | None
    status: OutboxStatus
    created_at: datetime


@dataclass(frozen=True)
class Replied:
    """One reply that counts as answered, as the policy's history facts need it."""

    email: str
    profile_url: str | None
    invitation_id: str | None
    created_at: datetime
    shadow: bool = False  # decided in shadow mode: recorded, never sent


@dataclass(frozen=True)
class OutboxItem:
    """A reply as the send loop and the review commands read it."""

    id: int
    message_row: int
    message_id: str
    template: str
    recipient_name: str | None
    recipient_email: str
    redirected_to: str | None
    status: OutboxStatus
    attempts: int
    person_name: str | None
    profile_url: str | None


@dataclass(frozen=True)
class Item:
    """A message with its reply, if any, as the digest, ``held`` and ``status`` read it."""

    id: int  # the message's row: the item's number in the digest, `held` and `resolve`
    account: str
    message_key: str
    seen_at: datetime
    kind: str
    authentic: bool | None
    classify_rule: str
    person_name: str | None
    profile_url: str | None
    invitation_id: str | None
    action: str
    policy_rule: str
    reasons: tuple[str, ...]
    error: str | None
    resolved_at: datetime | None
    outbox_status: OutboxStatus | None  # None: no reply
    recipient_email: str | None
    last_error: str | None  # the reply's

    @classmethod
    def of(cls, row: Mapping[Any, Any]) -> Item:
        """From a row of messages outer-joined to outbox (``reasons`` still JSON)."""
        status = row["outbox_status"]
        return cls(
            row["id"], row["account"], row["message_key"], row["seen_at"], row["kind"],
            row["authentic"], row["classify_rule"], row["person_name"], row["profile_url"],
            row["invitation_id"], row["action"], row["policy_rule"],
            tuple(json.loads(row["reasons"])), row["error"], row["resolved_at"],
            None if status is None else OutboxStatus(status), row["recipient_email"],
            row["last_error"])


@dataclass(frozen=True)
class PollRecord:
    """One poll of one account: when, whether it went well, what it found."""

    id: int
    account: str
    started_at: datetime
    finished_at: datetime | None
    ok: bool
    new_messages: int
    error: str | None


@dataclass(frozen=True)
class Pause:
    """A pause of an account's automatic replies after a reached cap, and its one alert."""

    id: int
    account: str
    reason: str
    started_at: datetime
    alert_message_id: str
    alert_attempted_at: datetime | None
    alert_sent_at: datetime | None


@dataclass(frozen=True)
class WeekCount:
    """How many of one week's messages had this kind, action and policy rule."""

    kind: str
    action: str
    policy_rule: str
    n: int


@dataclass(frozen=True)
class DigestFacts:
    """What the digest reads of one account, all from one transaction."""

    replies: tuple[Item, ...]  # replies sent, or decided in shadow mode, in the week
    weeks: tuple[tuple[WeekCount, ...], ...]  # the counts of each week, oldest first
    waiting: int  # replies queued, being sent or waiting for a retry
    polls: tuple[PollRecord, ...]  # the polls of the week, oldest first
    open_items: tuple[Item, ...]  # everything still waiting for a person
    last_good_poll: datetime | None
    pause: Pause | None


@dataclass(frozen=True)
class Waiting:
    """A reply waiting for the counselor's approval, as the list and the review email show it."""

    id: int
    kind: str
    template: str
    person_name: str | None
    recipient_name: str | None
    recipient_email: str
    redirected_to: str | None
    created_at: datetime
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class ReviewMail:
    """A review email, digest or pause alert sent to the counselor, which an answer may name.

    ``items`` is what it listed: the outbox ids of a review email, ``{"resolve": [...]}`` for a
    digest's numbered held items, or ``{"pause": id}`` for a pause alert.
    """

    id: int
    account: str
    message_id: str
    token_hash: str  # sha256 of the one-time token, never the token
    items: Any
    sent_at: datetime
    expires_at: datetime
    used_at: datetime | None
