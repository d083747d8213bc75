"""Find how to reach the person a notification is about: the recipients stage.

Sources, in order: the LinkedIn message relay (``…@reply.linkedin.com``) for LinkedIn messages;
otherwise the counselor's directory alone (``modbot.directory``): a ``Reply-To`` is never an
address by itself, since no LinkedIn signature covers it. Pure apart from the directory's own
lookup, which never raises; this module must never guess an address.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modbot.model import Authenticity, Classification, Kind, Recipient, Resolution, Unresolved

if TYPE_CHECKING:
    from modbot.directory.index import Directory

_RELAY_DOMAIN = "reply.linkedin.com"


def find_address(classification: Classification, authenticity: Authenticity,
            directory: Directory | None) -> Resolution:
    """Where to send the reply for this notification, or why there is nowhere."""
    person = classification.person
    display = person.name or ""
    if classification.kind is Kind.LINKEDIN_MESSAGE:
        relay = person.relay_address
        if relay and relay.lower().endswith("@" + _RELAY_DOMAIN):
            return Recipient(display, relay, "linkedin-relay")
        return Unresolved("the LinkedIn message carries no reply relay address")
    if directory is None:
        return Unresolved("no directory is configured to find the person's address")
    return directory.lookup(person.name, person.profile_url)
