"""One read of a message's header block, before its body is fetched.

A poll fetches the header block of every new message; ``triage`` reads it once and says what
the poll needs to know of it: the Message-ID (the store's key), whether the message is worth
fetching whole (``parse.linkedin_candidate``), and which Message-IDs it answers or refers to,
so that answers to modbot's own mail can be recognised for a whole batch in a few queries
instead of one per message. Pure, and never raises: an unreadable header block gives what
could be read, erring towards fetching the message. It must never log a header's content.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import default as default_policy

from modbot.parse import decode_header_value, linkedin_candidate

_MESSAGE_ID = re.compile(r"<[^<>\s]{1,250}>")
_REPLY_FIELDS = ("in-reply-to", "references")


@dataclass(frozen=True)
class Triage:
    """What one header block tells before the body is fetched.

    ``answers`` are the Message-IDs named in In-Reply-To and References (at most 50), against
    which a review email, digest or pause alert is recognised. ``references`` are those fields
    as the policy reads them (``references``), against which a reply modbot sent is recognised.
    """

    message_id: str | None
    candidate: bool
    answers: tuple[str, ...] = ()
    references: tuple[str, ...] = ()


def message_ids(values: Sequence[str]) -> list[str]:
    """The Message-IDs written in ``values`` (header values), at most 50 from 20,000 characters."""
    return _MESSAGE_ID.findall(" ".join(values)[:20000])[:50]


def references(in_reply_to: Iterable[str], references_: Iterable[str]) -> list[str]:
    """The decoded In-Reply-To values and References entries, as the policy compares them with
    the Message-IDs of modbot's replies (a person answering modbot's mail)."""
    return [*in_reply_to, *" ".join(references_).split()]


def triage(header: bytes) -> Triage:
    """Read ``header`` (a message's header block) once for what the poll needs."""
    candidate = linkedin_candidate(header)
    lowered = header.lower()
    replies = b"in-reply-to:" in lowered or b"references:" in lowered
    try:
        parsed = BytesHeaderParser(policy=default_policy).parsebytes(header)
    except Exception:  # a header the stdlib cannot parse: the key falls back to the bytes
        return Triage(None, candidate)
    try:
        value = parsed.get("message-id")
        message_id = str(value).strip() if value else None
    except Exception:  # the same fallback for a Message-ID the header registry rejects
        message_id = None
    if not replies:  # most notifications: nothing more to read
        return Triage(message_id, candidate)
    raw: dict[str, list[str]] = {name: [] for name in _REPLY_FIELDS}
    for name, text in parsed.raw_items():
        values = raw.get(str(name).lower())
        if values is not None:
            values.append(str(text))
    decoded = {name: [decode_header_value(v) for v in values] for name, values in raw.items()}
    return Triage(message_id, candidate,
                  answers=tuple(message_ids([*raw["in-reply-to"], *raw["references"]])),
                  references=tuple(references(decoded["in-reply-to"], decoded["references"])))
