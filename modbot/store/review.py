"""The statements of what waits for the counselor: replies waiting for review, held items,
and the review emails, digests and pause alerts an answer may name.

A status changes here only under a condition in the same statement (a reply still ``review``,
an item still open, a reference still unused), so a decision that comes late, twice, or for
another account's row changes nothing. Every method that lists or changes items takes the
account whose items they must be.

This module must never keep a token in clear (only its hash comes in) or read the clock.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import Connection

from modbot.records import OutboxStatus, ReviewMail, Waiting
from modbot.store.database import Database
from modbot.store.schema import OPEN_ITEM, messages, outbox, review_mails

S = OutboxStatus
_OF_ACCOUNT = select(outbox.c.id).join(messages, messages.c.id == outbox.c.message_row)


def _decide(c: Connection, account: str, approve: Collection[int], reject: Collection[int],
            now: datetime) -> tuple[tuple[int, ...], tuple[int, ...], list[int]]:
    """Approve and reject ``account``'s waiting replies among ``approve`` and ``reject``.

    Returns (approved, rejected, asked for but not waiting), each sorted.
    """
    asked = set(approve) | set(reject)
    ready = set(c.execute(_OF_ACCOUNT.where(
        messages.c.account == account, outbox.c.status == S.REVIEW,
        outbox.c.id.in_(asked))).scalars())
    approved, rejected = sorted(set(approve) & ready), sorted(set(reject) & ready)
    if approved:  # queued again under the same Message-ID; the poll's outbox sends it
        c.execute(update(outbox).where(outbox.c.id.in_(approved), outbox.c.status == S.REVIEW)
                  .values(status=S.QUEUED.value, last_error=None, next_attempt_at=None))
    if rejected:
        c.execute(update(outbox).where(outbox.c.id.in_(rejected), outbox.c.status == S.REVIEW)
                  .values(status=S.REJECTED.value))
        rows = select(outbox.c.message_row).where(outbox.c.id.in_(rejected))
        c.execute(update(messages).where(messages.c.id.in_(rows),
                                         messages.c.resolved_at.is_(None)).values(resolved_at=now))
    return tuple(approved), tuple(rejected), sorted(asked - ready)


def _resolve(c: Connection, account: str, items: Collection[int] | None,
             now: datetime) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Close ``account``'s held items ``items`` (None: every one).

    Returns (resolved, asked for but not held), each sorted. A reply that still waits for
    review is rejected with its item: the counselor dealt with it, so it is never sent.
    """
    query = select(messages.c.id).select_from(
        messages.outerjoin(outbox, outbox.c.message_row == messages.c.id)).where(
        messages.c.account == account, OPEN_ITEM)
    if items is not None:
        query = query.where(messages.c.id.in_(list(items)))
    held = sorted(set(c.execute(query).scalars()))
    if held:
        c.execute(update(outbox).where(outbox.c.message_row.in_(held),
                                       outbox.c.status == S.REVIEW)
                  .values(status=S.REJECTED.value))
        c.execute(update(messages).where(messages.c.id.in_(held),
                                         messages.c.resolved_at.is_(None)).values(resolved_at=now))
    return tuple(held), tuple(sorted(set(items or ()) - set(held)))


def _use(c: Connection, mail_id: int, now: datetime) -> bool:
    """Spend a reference: True the first time only."""
    return bool(c.execute(update(review_mails).where(
        review_mails.c.id == mail_id, review_mails.c.used_at.is_(None))
        .values(used_at=now)).rowcount)


class ReviewStatements(Database):
    """The counselor's side: waiting replies, held items, and the references of answers."""

    def waiting(self, account: str) -> list[Waiting]:
        """``account``'s replies waiting for review, oldest first."""
        query = (
            select(outbox.c.id, messages.c.kind, outbox.c.template, messages.c.person_name,
                   outbox.c.recipient_name, outbox.c.recipient_email, outbox.c.redirected_to,
                   outbox.c.created_at, messages.c.reasons)
            .join(messages, messages.c.id == outbox.c.message_row)
            .where(messages.c.account == account, outbox.c.status == S.REVIEW)
            .order_by(outbox.c.id))
        with self.transaction() as c:
            return [Waiting(*row[:-1], tuple(json.loads(row.reasons)))
                    for row in c.execute(query)]

    def settle(self, account: str, approve: Sequence[int] | None, reject: Sequence[int] | None,
               now: datetime) -> tuple[tuple[int, ...], tuple[int, ...], list[int]]:
        """Approve and reject waiting replies of ``account`` by hand (None: every one that
        waits). Returns (approved, rejected, asked for but not waiting)."""
        with self.transaction() as c:
            every: set[int] = set()
            if approve is None or reject is None:
                every = set(c.execute(_OF_ACCOUNT.where(
                    messages.c.account == account, outbox.c.status == S.REVIEW)).scalars())
            return _decide(c, account, every if approve is None else approve,
                           every if reject is None else reject, now)

    def resolve(self, account: str, items: Collection[int] | None,
                now: datetime) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Close ``account``'s held items ``items`` (None: all of them); returns (resolved,
        asked for but not held: another account's, or no longer held)."""
        with self.transaction() as c:
            return _resolve(c, account, items, now)

    def readdress(self, account: str, item_id: int, address: str) -> bool:
        """Send ``account``'s waiting reply ``item_id`` to ``address``; False if it does not
        wait."""
        with self.transaction() as c:
            return bool(c.execute(update(outbox).where(
                outbox.c.id == item_id, outbox.c.status == S.REVIEW,
                outbox.c.message_row.in_(select(messages.c.id).where(
                    messages.c.account == account)))
                .values(recipient_email=address)).rowcount)

    # --- references that an answer by email may carry -----------------------------------

    def add_review_mail(self, account: str, message_id: str, token_hash: str, items: object,
                        now: datetime, expires_at: datetime,
                        not_within: timedelta | None = None) -> bool:
        """Record a mail to the counselor that an answer may name; with ``not_within``, only
        if ``account`` sent none that recently (False then, and nothing is recorded)."""
        with self.transaction() as c:
            if not_within is not None:
                last = c.execute(select(func.max(review_mails.c.sent_at)).where(
                    review_mails.c.account == account)).scalar_one_or_none()
                if last is not None and last > now - not_within:
                    return False
            c.execute(review_mails.insert().values(
                account=account, message_id=message_id, token_hash=token_hash,
                items=json.dumps(items), sent_at=now, expires_at=expires_at))
        return True

    def forget_review_mail(self, message_id: str) -> None:
        """Forget a mail that could not be sent (and so its token)."""
        with self.transaction() as c:
            c.execute(delete(review_mails).where(review_mails.c.message_id == message_id))

    def is_review_mail(self, message_ids: Sequence[str]) -> bool:
        """Whether any of ``message_ids`` is a mail recorded by ``add_review_mail``."""
        with self.transaction() as c:
            return c.execute(select(review_mails.c.id).where(
                review_mails.c.message_id.in_(list(message_ids))).limit(1)).first() is not None

    def review_mail(self, account: str, message_ids: Sequence[str]) -> ReviewMail | None:
        """``account``'s recorded mail among ``message_ids``, if any."""
        if not message_ids:
            return None
        with self.transaction() as c:
            row = c.execute(select(review_mails).where(
                review_mails.c.account == account,
                review_mails.c.message_id.in_(list(message_ids)))).first()
        if row is None:
            return None
        values = dict(row._mapping)
        values["items"] = json.loads(values["items"])
        return ReviewMail(**values)

    def answer_review(self, mail: ReviewMail, approve: Collection[int],
                      reject: Collection[int], now: datetime
                      ) -> tuple[tuple[int, ...], tuple[int, ...], list[int]] | None:
        """Spend ``mail``'s reference and decide its replies in one transaction; None if the
        reference was already used."""
        with self.transaction() as c:
            if not _use(c, mail.id, now):
                return None
            return _decide(c, mail.account, approve, reject, now)

    def answer_digest(self, mail: ReviewMail, items: Collection[int], now: datetime
                      ) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
        """Spend ``mail``'s reference and resolve ``items`` in one transaction; None if the
        reference was already used."""
        with self.transaction() as c:
            if not _use(c, mail.id, now):
                return None
            return _resolve(c, mail.account, items, now) if items else ((), ())

    def use_review_mail(self, mail: ReviewMail, now: datetime) -> bool:
        """Spend ``mail``'s reference: True the first time only."""
        with self.transaction() as c:
            return _use(c, mail.id, now)
