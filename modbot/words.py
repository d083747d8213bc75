"""The words a counselor reads for modbot's own names: kinds, authenticity, actions, states.

The store, the JSON output and the configuration speak in stable identifiers
(``other_linkedin``, ``failed_temporary``); every place a person reads (the digest, the review
email, ``held``, ``run-once``, the demo) says the same thing in these words instead, so a new
kind or state is worded once, here. Pure values and lookups: this module must never import
anything beyond the standard library, so every command can use it cheaply.
"""

from __future__ import annotations

# kind -> (a label for a heading or a column, the phrase inside a sentence)
KINDS: dict[str, tuple[str, str]] = {
    "connection_invitation": ("Connection invitation", "a connection invitation"),
    "group_join_request": ("Request to join your group", "a request to join your LinkedIn group"),
    "group_activity": ("LinkedIn group news", "news from a LinkedIn group"),
    "linkedin_message": ("LinkedIn message", "a LinkedIn message"),
    "recommendation_request": ("Recommendation request", "a request for a recommendation"),
    "other_linkedin": ("LinkedIn job alerts and news", "a LinkedIn job alert or news"),
    "spoofed_linkedin": ("Fake LinkedIn mail", "mail pretending to come from LinkedIn"),
    "unknown_linkedin": ("LinkedIn mail of an unknown kind",
                         "LinkedIn mail of a kind modbot does not know"),
    "not_linkedin": ("Email not from LinkedIn", "an email not from LinkedIn"),
}
# Each rule of the classifier (``modbot.classify``) -> the message inside a sentence, as precise
# as that rule knows it; a test fails when a rule has no words here. The policy's own rules
# that stand for a message (``review-answer``) are worded here too.
DETAILS: dict[str, str] = {
    # the guards, first
    "not_linkedin": "an email not from LinkedIn",
    "spoofed_linkedin": "mail pretending to come from LinkedIn",
    "linkedin_staff_mail": "a LinkedIn employee's own mail (not a notification)",
    # LinkedIn's template keys
    "template_digest_of_people": "a LinkedIn summary naming several people",
    "template_notification_digest": "a LinkedIn summary of new notifications",
    "template_accepted_invitation": "a note that someone accepted your invitation",
    "template_people_you_may_know": "LinkedIn's suggestions of people you may know",
    "template_sign_up_nudge": "a LinkedIn sign-up reminder",
    "template_group_applicant_response": "a group manager's answer to a request to join",
    "template_group_join_request": "a request to join your LinkedIn group",
    "template_recommendation_request": "a request for a recommendation",
    "template_group_activity": "news from a LinkedIn group",
    "template_invitation": "a connection invitation",
    "template_message": "a LinkedIn message",
    "template_other": "a LinkedIn job alert or newsletter",
    "template_unknown": "LinkedIn mail of a new kind modbot does not know yet",
    # the class header, the sender, then phrases
    "class_invitation": "a connection invitation",
    "class_message": "a LinkedIn message",
    "class_other": "a LinkedIn job alert or welcome",
    "sender_groups_join_request": "a request to join your LinkedIn group",
    "sender_groups": "news from a LinkedIn group",
    "sender_other": "a LinkedIn job alert or news",
    "phrase_accepted_invitation": "a note that someone accepted your invitation",
    "phrase_people_you_may_know": "LinkedIn's suggestions of people you may know",
    "phrase_recommendation_request": "a request for a recommendation",
    "phrase_group_join_request": "a request to join your LinkedIn group",
    "phrase_invitation": "a connection invitation",
    "phrase_message": "a LinkedIn message",
    "phrase_group_activity": "news from a LinkedIn group",
    "phrase_jobs": "a LinkedIn job alert",
    "default_unknown_linkedin": "LinkedIn mail of a kind modbot does not know",
    # policy rules that stand for the message
    "review-answer": "your answer to modbot's email",
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
