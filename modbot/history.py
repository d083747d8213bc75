"""What one account has answered, read once per poll and kept current as the poll queues
replies: the policy's history facts without a query per message.

Pure: built from the store's ``Replied`` rows and the poll's ``now``. The account's lock makes
the poll the only writer of the account's replies; what a command changes meanwhile (a waiting
reply rejected, say) shows from the next poll on.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from modbot.model import Classification, History, Recipient
from modbot.recipients import normalize_profile_url
from modbot.store import Replied


class Answered:
    """The account's replies that count as answered: to whom, to which LinkedIn profile and
    invitation, and how many in the last hour and day before ``now``."""

    def __init__(self, replies: Iterable[Replied], now: datetime,
                 person_window: timedelta) -> None:
        self._since = now - person_window
        self._hour_ago = now - timedelta(hours=1)
        self._day_ago = now - timedelta(days=1)
        self._addresses: set[str] = set()
        self._profiles: set[str] = set()
        self._invitations: set[str] = set()
        self.last_hour = 0
        self.last_day = 0
        for reply in replies:
            self.add(reply)

    def add(self, reply: Replied) -> None:
        """Count ``reply``, read from the store or just queued by the poll."""
        if reply.invitation_id:
            self._invitations.add(reply.invitation_id)  # answered once, however long ago
        if reply.created_at < self._since:
            return
        if reply.email:
            self._addresses.add(reply.email.lower())
        profile = normalize_profile_url(reply.profile_url) if reply.profile_url else None
        if profile:
            self._profiles.add(profile)
        self.last_hour += reply.created_at >= self._hour_ago
        self.last_day += reply.created_at >= self._day_ago

    def history(self, c: Classification, recipient: Recipient | None, *,
                is_reply_to_our_mail: bool) -> History:
        """The policy's facts about earlier replies for a notification that would get one."""
        profile = normalize_profile_url(c.person.profile_url) if c.person.profile_url else None
        return History(
            # Answered at this address, or under this LinkedIn profile: LinkedIn's relay gives
            # every message its own reply address, so a person whose auto-responder answers our
            # reply would otherwise come back as "new" each time (a mail loop).
            replied_to_person=(recipient is not None
                               and recipient.email.lower() in self._addresses)
            or (profile is not None and profile in self._profiles),
            replied_to_invitation=bool(c.person.invitation_id)
            and c.person.invitation_id in self._invitations,
            replies_last_hour=self.last_hour,
            replies_last_day=self.last_day,
            is_reply_to_our_mail=is_reply_to_our_mail,
        )
