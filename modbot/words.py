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
# Where the classifying rule says more than the kind does (rule name -> sentence phrase).
DETAILS: dict[str, str] = {
    "template_accepted_invitation": "a note that someone accepted your invitation",
    "phrase_accepted_invitation": "a note that someone accepted your invitation",
    "template_people_you_may_know": "LinkedIn's suggestions of people you may know",
    "phrase_people_you_may_know": "LinkedIn's suggestions of people you may know",
    "phrase_jobs": "a LinkedIn job alert",
    "template_digest_of_people": "a LinkedIn summary naming several people",
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
