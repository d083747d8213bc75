"""The values that flow between the stages.

Every stage takes and returns these frozen dataclasses; none of them touches the network, the
database or the clock. Decisions carry their ``reasons`` so each one can be explained later.
This module must never import a protocol library.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

# At most this much of each header block is fetched: a LinkedIn notification's headers are a
# few kilobytes, while a crafted message can carry a megabyte of To: addresses.
HEADER_LIMIT = 256 * 1024


class Kind(enum.StrEnum):
    """What a notification is. The values are stable: they appear in the store and in JSON."""

    CONNECTION_INVITATION = "connection_invitation"
    GROUP_JOIN_REQUEST = "group_join_request"
    GROUP_ACTIVITY = "group_activity"
    LINKEDIN_MESSAGE = "linkedin_message"
    RECOMMENDATION_REQUEST = "recommendation_request"
    OTHER_LINKEDIN = "other_linkedin"
    SPOOFED_LINKEDIN = "spoofed_linkedin"
    NOT_LINKEDIN = "not_linkedin"
    UNKNOWN_LINKEDIN = "unknown_linkedin"


class Action(enum.StrEnum):
    """What the policy decided to do with a notification."""

    REPLY = "reply"
    HOLD = "hold"
    LOG = "log"
    IGNORE = "ignore"


class PolicyRule(enum.StrEnum):
    """The name of the rule that decided a ``Decision``; stable: the store keeps it.

    The policy's own table (``modbot.policy.RULES``) in its order, then the holds made around
    it: a message that could not be read, one too large to fetch, and the counselor's answer
    to modbot's own mail.
    """

    ALREADY_HANDLED = "already-handled"
    ANSWER_TO_MODBOT = "answer-to-modbot"
    NOT_LINKEDIN = "not-linkedin"
    SPOOFED_LINKEDIN = "spoofed-linkedin"
    CONFIGURED_ACTION = "configured-action"
    UNVERIFIED = "unverified"
    NO_ADDRESS = "no-address"
    INVITATION_ALREADY_ANSWERED = "invitation-already-answered"
    PERSON_ALREADY_ANSWERED = "person-already-answered"
    HOURLY_CAP = "hourly-cap"
    DAILY_CAP = "daily-cap"
    REPLIES_PAUSED = "replies-paused"
    REPLY = "reply"
    # decided outside the policy's table
    PROCESSING_ERROR = "processing-error"
    TOO_LARGE = "too-large"
    REVIEW_ANSWER = "review-answer"


# The rules that hold a reply because a cap is reached.
CAP_RULES = frozenset({PolicyRule.HOURLY_CAP, PolicyRule.DAILY_CAP})


class ClassifierRule(enum.StrEnum):
    """The name of a built-in rule of the classifier (``modbot.classify``); stable: the store
    keeps it as the message's ``classify_rule``. A counselor's own rules bring their own names.
    """

    # the guards, first
    NOT_LINKEDIN = "not_linkedin"
    SPOOFED_LINKEDIN = "spoofed_linkedin"
    LINKEDIN_STAFF_MAIL = "linkedin_staff_mail"
    # LinkedIn's template keys
    TEMPLATE_DIGEST_OF_PEOPLE = "template_digest_of_people"
    TEMPLATE_NOTIFICATION_DIGEST = "template_notification_digest"
    TEMPLATE_ACCEPTED_INVITATION = "template_accepted_invitation"
    TEMPLATE_PEOPLE_YOU_MAY_KNOW = "template_people_you_may_know"
    TEMPLATE_SIGN_UP_NUDGE = "template_sign_up_nudge"
    TEMPLATE_GROUP_APPLICANT_RESPONSE = "template_group_applicant_response"
    TEMPLATE_GROUP_JOIN_REQUEST = "template_group_join_request"
    TEMPLATE_RECOMMENDATION_REQUEST = "template_recommendation_request"
    TEMPLATE_GROUP_ACTIVITY = "template_group_activity"
    TEMPLATE_INVITATION = "template_invitation"
    TEMPLATE_MESSAGE = "template_message"
    TEMPLATE_OTHER = "template_other"
    TEMPLATE_UNKNOWN = "template_unknown"
    # the class header, the sender, then phrases
    CLASS_INVITATION = "class_invitation"
    CLASS_MESSAGE = "class_message"
    CLASS_OTHER = "class_other"
    SENDER_GROUPS_JOIN_REQUEST = "sender_groups_join_request"
    SENDER_GROUPS = "sender_groups"
    SENDER_OTHER = "sender_other"
    PHRASE_ACCEPTED_INVITATION = "phrase_accepted_invitation"
    PHRASE_PEOPLE_YOU_MAY_KNOW = "phrase_people_you_may_know"
    PHRASE_RECOMMENDATION_REQUEST = "phrase_recommendation_request"
    PHRASE_GROUP_JOIN_REQUEST = "phrase_group_join_request"
    PHRASE_INVITATION = "phrase_invitation"
    PHRASE_MESSAGE = "phrase_message"
    PHRASE_GROUP_ACTIVITY = "phrase_group_activity"
    PHRASE_JOBS = "phrase_jobs"
    DEFAULT_UNKNOWN_LINKEDIN = "default_unknown_linkedin"
    # what a message that never reached the classifier is recorded as classified by
    ERROR = "error"


class Mode(enum.StrEnum):
    """How far a reply goes: decided and logged only, queued for approval, or sent."""

    SHADOW = "shadow"
    REVIEW = "review"
    AUTO = "auto"


class Verdict(enum.StrEnum):
    """Whether a message is shown to come from LinkedIn."""

    AUTHENTIC = "authentic"  # trusted evidence that LinkedIn sent it
    SPOOF = "spoof"  # evidence that it did not come from LinkedIn
    UNKNOWN = "unknown"  # no trustworthy evidence either way


@dataclass(frozen=True)
class Address:
    """A display name and an address, both already decoded."""

    name: str
    email: str


@dataclass(frozen=True)
class Summary:
    """What is known of a message before its body is fetched.

    ``header`` is its header block, cut at ``HEADER_LIMIT`` bytes; ``size`` is its whole size
    as the server reports it (``RFC822.SIZE``).
    """

    header: bytes
    size: int

    @property
    def header_truncated(self) -> bool:
        """True when the header block is longer than ``HEADER_LIMIT`` and was cut."""
        return len(self.header) >= HEADER_LIMIT


@dataclass(frozen=True)
class Notification:
    """One parsed email: what the later stages may look at.

    ``headers`` maps lower-cased header names to every value in message order, decoded for
    reading. ``fields`` is the same header block as the parser split it, in order, each value
    raw (unfolded, never decoded), for comparing with what a DKIM verifier read. ``raw`` keeps
    the original bytes for DKIM verification only; it is never logged or stored.
    """

    message_id: str | None
    subject: str
    from_: Address | None
    sender: str | None
    reply_to: tuple[Address, ...]
    to: tuple[Address, ...]
    date: datetime | None
    headers: Mapping[str, tuple[str, ...]]
    text: str
    html: str
    links: tuple[str, ...]
    defects: tuple[str, ...]
    raw: bytes = field(default=b"", repr=False)
    fields: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        values = self.headers.get(name.lower(), ())
        return values[0] if values else None


@dataclass(frozen=True)
class Authenticity:
    """The authenticity stage's finding, with the evidence behind it.

    ``looks_like_linkedin`` says whether the message claims to be LinkedIn's at all (From, Sender,
    X-LinkedIn-* headers, look-alike domains). ``verdict`` says whether that claim is proven.
    ``signed`` names the header fields (lower-cased) the proof covers: only they, and the signed
    body, speak for LinkedIn. ``evidence`` says which evidence decided: ``exchange`` (Exchange
    Online's verdict), ``gateway`` (an inbound gateway's), ``trusted-server`` (a server named in
    ``trusted_authserv_ids``), ``dkim`` or ``arc`` (verified here), or ``""`` for none.
    """

    looks_like_linkedin: bool
    verdict: Verdict
    reasons: tuple[str, ...]
    signed: frozenset[str] = frozenset()
    evidence: str = ""

    @property
    def authentic(self) -> bool | None:
        """True if proven LinkedIn, False if shown to be a spoof, None if it cannot tell."""
        if self.verdict is Verdict.AUTHENTIC:
            return True
        if self.verdict is Verdict.SPOOF:
            return False
        return None


@dataclass(frozen=True)
class Person:
    """Who a notification is about, as far as the message itself says.

    Never the counselor: the "This email was intended for …" footer names the counselor.
    """

    name: str | None = None
    headline: str | None = None
    profile_url: str | None = None
    invitation_id: str | None = None
    relay_address: str | None = None  # uuid@reply.linkedin.com for LinkedIn messages
    group: str | None = None


@dataclass(frozen=True)
class Classification:
    """The kind of a notification, the rule that decided it, and the person it concerns."""

    kind: Kind
    rule: str
    person: Person
    template_key: str | None
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Recipient:
    """A resolved address for the person, and where it came from (e.g. ``directory-csv``)."""

    name: str
    email: str
    source: str


@dataclass(frozen=True)
class Unresolved:
    """No trustworthy address for the person, and why."""

    reason: str


Resolution = Recipient | Unresolved


class AnsweredReply(Protocol):
    """One reply that counts as answered, as the history facts need it (the store's rows)."""

    @property
    def email(self) -> str: ...
    @property
    def profile_url(self) -> str | None: ...
    @property
    def invitation_id(self) -> str | None: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def shadow(self) -> bool:
        """Decided in shadow mode: recorded, never sent."""
        ...


@dataclass(frozen=True)
class History:
    """Facts from the store that the policy needs; gathered by the caller, never by the policy."""

    message_handled: bool = False
    replied_to_person: bool = False
    replied_to_invitation: bool = False
    replies_last_hour: int = 0
    replies_last_day: int = 0
    is_reply_to_our_mail: bool = False
    # Since when the account's replies are paused, because a cap was reached; None while they
    # are not (``modbot resume`` and the counselor's "resume" end a pause).
    paused_since: datetime | None = None


@dataclass(frozen=True)
class Decision:
    """What to do with one notification, and why.

    For ``Action.REPLY`` the ``recipient`` and ``template`` are set, and ``mode`` says whether the
    reply is only logged (shadow), queued for approval (review) or sent (auto).
    """

    action: Action
    rule: str
    reasons: tuple[str, ...]
    template: str | None = None
    recipient: Recipient | None = None
    mode: Mode = Mode.AUTO
