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


@dataclass(frozen=True)
class History:
    """Facts from the store that the policy needs; gathered by the caller, never by the policy."""

    message_handled: bool = False
    replied_to_person: bool = False
    replied_to_invitation: bool = False
    replies_last_hour: int = 0
    replies_last_day: int = 0
    is_reply_to_our_mail: bool = False


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
