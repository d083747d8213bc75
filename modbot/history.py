"""What one account has answered, read once per poll and kept current as the poll queues
replies, and what a batch of messages needs besides (``Past``): the policy's history facts
without a query per message.

Pure: built from the store's ``Replied`` rows and the poll's ``now``. The account's lock makes
the poll the only writer of the account's replies; what a command changes meanwhile (a waiting
reply rejected, say) shows from the next poll on.

Shadow mode must predict automatic mode exactly, so a reply decided in shadow mode (recorded,
never sent) counts as answered for the decisions of a kind in shadow mode: a reminder of an
invitation the shadow week "answered" is logged, as automatic mode would log it, and the caps
count shadow replies. It never counts for a kind in review or automatic mode: nobody received
it, so after the switch from shadow to auto the person's next notification gets the real reply.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from modbot.directory.index import profile_key
from modbot.kinds import REPLY_KINDS
from modbot.model import AnsweredReply, Classification, History, Recipient


class _Seen:
    """Who was answered and how many replies were made lately, for one way of counting."""

    def __init__(self) -> None:
        self.addresses: set[str] = set()
        self.profiles: set[str] = set()
        self.invitations: set[str] = set()
        self.last_hour = 0
        self.last_day = 0


class Answered:
    """The account's replies that count as answered: to whom, to which LinkedIn profile and
    invitation, and how many in the last hour and day before ``now``; counted once as
    automatic and review mode see them and once as shadow mode does (shadow replies too)."""

    def __init__(self, replies: Iterable[AnsweredReply], now: datetime,
                 person_window: timedelta) -> None:
        self._since = now - person_window
        self._hour_ago = now - timedelta(hours=1)
        self._day_ago = now - timedelta(days=1)
        self._real = _Seen()
        self._shadow = _Seen()
        for reply in replies:
            self.add(reply)

    @property
    def last_hour(self) -> int:
        return self._real.last_hour

    @property
    def last_day(self) -> int:
        return self._real.last_day

    def add(self, reply: AnsweredReply) -> None:
        """Count ``reply``, read from the store or just queued by the poll."""
        profile = profile_key(reply.profile_url) if reply.profile_url else None
        for seen in (self._shadow,) if reply.shadow else (self._real, self._shadow):
            if reply.invitation_id:
                seen.invitations.add(reply.invitation_id)  # answered once, however long ago
            if reply.created_at < self._since:
                continue
            if reply.email:
                seen.addresses.add(reply.email.lower())
            if profile:
                seen.profiles.add(profile)
            seen.last_hour += reply.created_at >= self._hour_ago
            seen.last_day += reply.created_at >= self._day_ago

    def history(self, c: Classification, recipient: Recipient | None, *,
                is_reply_to_our_mail: bool, shadow: bool = False) -> History:
        """The policy's facts about earlier replies for a notification that would get one;
        ``shadow``: the reply would be made in shadow mode, so shadow replies count too."""
        seen = self._shadow if shadow else self._real
        profile = profile_key(c.person.profile_url) if c.person.profile_url else None
        return History(
            # Answered at this address, or under this LinkedIn profile: LinkedIn's relay gives
            # every message its own reply address, so a person whose auto-responder answers our
            # reply would otherwise come back as "new" each time (a mail loop).
            replied_to_person=(recipient is not None
                               and recipient.email.lower() in seen.addresses)
            or (profile is not None and profile in seen.profiles),
            replied_to_invitation=bool(c.person.invitation_id)
            and c.person.invitation_id in seen.invitations,
            replies_last_hour=seen.last_hour,
            replies_last_day=seen.last_day,
            is_reply_to_our_mail=is_reply_to_our_mail,
        )


@dataclass(frozen=True)
class Past:
    """What the store knew when a batch of messages was read, handed to ``judging.judge``:
    the account's replies (None where nothing is read, as ``modbot classify`` does), which
    Message-IDs the batch's messages refer to are modbot's own replies, and since when the
    account's replies are paused, if they are."""

    answered: Answered | None = None
    our_message_ids: frozenset[str] = frozenset()
    paused_since: datetime | None = None

    def history(self, c: Classification, recipient: Recipient | None,
                references: Sequence[str], *, shadow: bool = False) -> History:
        """The policy's facts for one message; ``references`` are its In-Reply-To and
        References entries (``triage.references``), ``shadow`` as in ``Answered.history``."""
        ours = any(r.strip() in self.our_message_ids for r in references)
        if c.kind not in REPLY_KINDS:  # the reply facts decide only for kinds with a reply
            return History(is_reply_to_our_mail=ours)
        if self.answered is None:
            return History(is_reply_to_our_mail=ours, paused_since=self.paused_since)
        found = self.answered.history(c, recipient, is_reply_to_our_mail=ours, shadow=shadow)
        return replace(found, paused_since=self.paused_since)
