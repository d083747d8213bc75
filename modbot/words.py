"""The words a counselor reads for modbot's own names: kinds, authenticity, actions, states.

The store, the JSON output and the configuration speak in stable identifiers
(``other_linkedin``, ``failed_temporary``); every place a person reads (the digest, the review
email, ``held``, ``run-once``, the demo) says the same thing in these words instead, so a new
kind or state is worded once, here (a kind's own label and phrase live in its row of
``modbot.kinds``). Pure values and lookups: this module must never import anything beyond the
standard library and modbot's value modules, so every command can use it cheaply.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from modbot.kinds import ROWS
from modbot.model import ClassifierRule, PolicyRule

# kind -> (a label for a heading or a column, the phrase inside a sentence), from the table
KINDS: dict[str, tuple[str, str]] = {row.kind.value: (row.label, row.phrase) for row in ROWS}
C = ClassifierRule
# Each rule of the classifier (``modbot.classify``) -> the message inside a sentence, as precise
# as that rule knows it; a test fails when a rule has no words here. The policy's own rules
# that stand for a message (``review-answer``) are worded here too.
DETAILS: dict[str, str] = {
    # the guards, first
    C.NOT_LINKEDIN: "an email not from LinkedIn",
    C.SPOOFED_LINKEDIN: "mail pretending to come from LinkedIn",
    C.LINKEDIN_STAFF_MAIL: "a LinkedIn employee's own mail (not a notification)",
    # LinkedIn's template keys
    C.TEMPLATE_DIGEST_OF_PEOPLE: "a LinkedIn summary naming several people",
    C.TEMPLATE_NOTIFICATION_DIGEST: "a LinkedIn summary of new notifications",
    C.TEMPLATE_ACCEPTED_INVITATION: "a note that someone accepted your invitation",
    C.TEMPLATE_PEOPLE_YOU_MAY_KNOW: "LinkedIn's suggestions of people you may know",
    C.TEMPLATE_SIGN_UP_NUDGE: "a LinkedIn sign-up reminder",
    C.TEMPLATE_GROUP_APPLICANT_RESPONSE: "a group manager's answer to a request to join",
    C.TEMPLATE_GROUP_JOIN_REQUEST: "a request to join your LinkedIn group",
    C.TEMPLATE_RECOMMENDATION_REQUEST: "a request for a recommendation",
    C.TEMPLATE_GROUP_ACTIVITY: "news from a LinkedIn group",
    C.TEMPLATE_INVITATION: "a connection invitation",
    C.TEMPLATE_MESSAGE: "a LinkedIn message",
    C.TEMPLATE_OTHER: "a LinkedIn job alert or newsletter",
    C.TEMPLATE_UNKNOWN: "LinkedIn mail of a new kind modbot does not know yet",
    # the class header, the sender, then phrases
    C.CLASS_INVITATION: "a connection invitation",
    C.CLASS_MESSAGE: "a LinkedIn message",
    C.CLASS_OTHER: "a LinkedIn job alert or welcome",
    C.SENDER_GROUPS_JOIN_REQUEST: "a request to join your LinkedIn group",
    C.SENDER_GROUPS: "news from a LinkedIn group",
    C.SENDER_OTHER: "a LinkedIn job alert or news",
    C.PHRASE_ACCEPTED_INVITATION: "a note that someone accepted your invitation",
    C.PHRASE_PEOPLE_YOU_MAY_KNOW: "LinkedIn's suggestions of people you may know",
    C.PHRASE_RECOMMENDATION_REQUEST: "a request for a recommendation",
    C.PHRASE_GROUP_JOIN_REQUEST: "a request to join your LinkedIn group",
    C.PHRASE_INVITATION: "a connection invitation",
    C.PHRASE_MESSAGE: "a LinkedIn message",
    C.PHRASE_GROUP_ACTIVITY: "news from a LinkedIn group",
    C.PHRASE_JOBS: "a LinkedIn job alert",
    C.DEFAULT_UNKNOWN_LINKEDIN: "LinkedIn mail of a kind modbot does not know",
    # policy rules that stand for the message
    PolicyRule.REVIEW_ANSWER: "your answer to modbot's email",
}
# authentic (True, False, None as stored) -> words
AUTHENTIC: dict[bool | None, str] = {
    True: "proven to come from LinkedIn",
    False: "shown not to come from LinkedIn",
    None: "not proven to come from LinkedIn",
}
ACTIONS: dict[str, str] = {
    "reply": "answered",
    "hold": "held for you",
    "log": "noted, no answer needed",
    "ignore": "left alone",
}
# The reply's state in the outbox -> words
STATUSES: dict[str, str] = {
    "queued": "to be sent",
    "review": "waiting for your approval",
    "shadow": "would be sent (shadow mode sends nothing)",
    "sending": "being sent",
    "sent": "sent",
    "failed_temporary": "to be tried again",
    "failed": "could not be sent",
    "uncertain": "may have been sent",
    "rejected": "not sent: you rejected it",
}
MODES: dict[str, str] = {
    "shadow": "shadow (decide and record, send nothing)",
    "review": "review (replies wait for your approval)",
    "auto": "automatic (replies are sent)",
}


def _fallback(identifier: str) -> str:
    return identifier.replace("_", " ").replace("-", " ")


def kind_label(kind: str) -> str:
    """``kind`` as a heading says it: "Connection invitation"."""
    return KINDS.get(kind, (_fallback(kind).capitalize(), ""))[0]


def kind_phrase(kind: str, classified_by: str | None = None) -> str:
    """``kind`` inside a sentence, more precise where the classifying rule tells more:
    "a LinkedIn job alert", "a connection invitation"."""
    if classified_by and classified_by in DETAILS:
        return DETAILS[classified_by]
    return KINDS.get(kind, ("", _fallback(kind)))[1]


def authenticity(authentic: bool | None) -> str:
    """Whether mail is LinkedIn's, in words: "proven to come from LinkedIn"."""
    return AUTHENTIC.get(authentic, AUTHENTIC[None])


def action(action_: str, status: str | None = None) -> str:
    """What modbot did, in words; a reply is told by its state: "sent", "may have been sent"."""
    if status:
        return STATUSES.get(status, _fallback(status))
    return ACTIONS.get(action_, _fallback(action_))


def mode(mode_: str) -> str:
    """A policy mode in words: "shadow (decide and record, send nothing)"."""
    return MODES.get(mode_, _fallback(mode_))


def plural(n: int, one: str, many: str | None = None) -> str:
    """"1 item", "3 items": a count with its noun."""
    return f"{n} {one if n == 1 else (many or one + 's')}"


def local_time(moment: datetime, zone: str, form: str = "%Y-%m-%d %H:%M") -> str:
    """``moment`` in the time zone ``zone`` (as given, if that zone is unknown), named:
    "2026-11-23 08:05 CST"."""
    try:
        local = moment.astimezone(ZoneInfo(zone))
    except (KeyError, ValueError):
        local = moment
    return f"{local:{form}} {local.tzname()}"
