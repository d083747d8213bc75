"""The reports' statements: what the digest, ``held`` and ``status`` read, and the digest's
own bookkeeping (claimed once per scheduled time).

Every report is of one account: one database may hold several inboxes, and each counselor is
told of their own alone. Counts are made by the database, so a long history never comes into
Python.

This module must never change a message or a reply; it writes only the digests table.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from modbot.errors import StoreError
from modbot.records import (
    COUNTS_AS_REPLIED,
    DigestFacts,
    Item,
    OutboxStatus,
    PollRecord,
    WeekCount,
)
from modbot.store.database import Database
from modbot.store.inbox import active_pause
from modbot.store.schema import OPEN_ITEM, digests, messages, outbox, polls

S = OutboxStatus
_COLUMNS = (messages, outbox.c.status.label("outbox_status"), outbox.c.recipient_email,
            outbox.c.last_error)
_ITEMS = (
    select(*_COLUMNS)
    .select_from(messages.outerjoin(outbox, outbox.c.message_row == messages.c.id))
    .order_by(messages.c.id)
)
# Replies only: an inner join lets the database start from the outbox's status index instead
# of looking up every message's reply (outbox.message_row has no index).
_REPLIES = select(*_COLUMNS).join(outbox, outbox.c.message_row == messages.c.id)


def _items(c: Connection, query: Any) -> tuple[Item, ...]:
    return tuple(Item.of(row._mapping) for row in c.execute(query))


def _replies(c: Connection, account: str, start: datetime, end: datetime) -> tuple[Item, ...]:
    o = outbox
    return _items(c, _REPLIES.where(
        messages.c.account == account,
        ((o.c.status == S.SENT) & (o.c.sent_at >= start) & (o.c.sent_at < end))
        | ((o.c.status == S.SHADOW) & (o.c.created_at >= start) & (o.c.created_at < end)))
        .order_by(o.c.id))


def _week_counts(c: Connection, account: str, first: datetime, weeks: int,
                 period: timedelta) -> tuple[tuple[WeekCount, ...], ...]:
    """Each week's counts by its own range of the index on (account, arrival, kind, action,
    rule); one query that sorts every message into its week took twice as long on SQLite."""
    m = messages
    return tuple(tuple(WeekCount(r.kind, r.action, r.policy_rule, int(r.n)) for r in c.execute(
        select(m.c.kind, m.c.action, m.c.policy_rule, func.count().label("n"))
        .where(m.c.account == account, m.c.seen_at >= first + week * period,
               m.c.seen_at < first + (week + 1) * period)
        .group_by(m.c.kind, m.c.action, m.c.policy_rule)))
        for week in range(weeks))


def _waiting(c: Connection, account: str) -> int:
    return int(c.execute(
        select(func.count()).select_from(outbox.join(
            messages, outbox.c.message_row == messages.c.id))
        .where(messages.c.account == account,
               outbox.c.status.in_((S.QUEUED, S.RETRY, S.SENDING)))).scalar_one())


def _polls(c: Connection, account: str, start: datetime,
           end: datetime) -> tuple[PollRecord, ...]:
    return tuple(PollRecord(**r._mapping) for r in c.execute(
        select(polls).where(polls.c.account == account, polls.c.started_at >= start,
                            polls.c.started_at < end).order_by(polls.c.id)))


def _last_good_poll(c: Connection, account: str) -> datetime | None:
    value: datetime | None = c.execute(
        select(func.max(polls.c.finished_at)).where(polls.c.ok.is_(True),
                                                    polls.c.account == account)
    ).scalar_one_or_none()
    return value


def _open_items(c: Connection, account: str) -> tuple[Item, ...]:
    return _items(c, _ITEMS.where(messages.c.account == account, OPEN_ITEM))


class ReportStatements(Database):
    """What the reports read, always of one account."""

    def digest_facts(self, account: str, start: datetime, end: datetime, first: datetime,
                     weeks: int, period: timedelta) -> DigestFacts:
        """What the digest of [start, end) reads, with ``weeks`` counts of ``period`` from
        ``first``: one transaction, so every part tells of the same moment."""
        with self.transaction() as c:
            return DigestFacts(
                replies=_replies(c, account, start, end),
                weeks=_week_counts(c, account, first, weeks, period),
                waiting=_waiting(c, account),
                polls=_polls(c, account, start, end),
                open_items=_open_items(c, account),
                last_good_poll=_last_good_poll(c, account),
                pause=active_pause(c, account))

    def items_between(self, account: str, start: datetime, end: datetime) -> list[Item]:
        """``account``'s messages seen in [start, end), with their reply's status if any."""
        with self.transaction() as c:
            return list(_items(c, _ITEMS.where(
                messages.c.account == account, messages.c.seen_at >= start,
                messages.c.seen_at < end)))

    def open_items(self, account: str) -> list[Item]:
        """Everything of ``account`` still waiting for a person, whenever it arrived."""
        with self.transaction() as c:
            return list(_open_items(c, account))

    def replies_between(self, account: str, start: datetime, end: datetime) -> list[Item]:
        """``account``'s replies sent, or decided in shadow mode, in [start, end)."""
        with self.transaction() as c:
            return list(_replies(c, account, start, end))

    def week_counts(self, account: str, first: datetime, weeks: int,
                    period: timedelta) -> tuple[tuple[WeekCount, ...], ...]:
        """For each of ``weeks`` periods from ``first``, ``account``'s messages of it counted
        by kind, action and policy rule."""
        with self.transaction() as c:
            return _week_counts(c, account, first, weeks, period)

    def waiting_to_send(self, account: str) -> int:
        """How many of ``account``'s replies are queued, being sent or waiting for a retry."""
        with self.transaction() as c:
            return _waiting(c, account)

    def replies_since(self, account: str, since: datetime) -> int:
        """How many replies that count against the caps ``account`` made since ``since``."""
        with self.transaction() as c:
            return int(c.execute(
                select(func.count()).select_from(outbox.join(
                    messages, messages.c.id == outbox.c.message_row))
                .where(messages.c.account == account,
                       outbox.c.status.in_(COUNTS_AS_REPLIED),
                       outbox.c.created_at >= since)).scalar_one())

    def polls_between(self, account: str, start: datetime, end: datetime) -> list[PollRecord]:
        """``account``'s polls started in [start, end), oldest first."""
        with self.transaction() as c:
            return list(_polls(c, account, start, end))

    def last_good_poll(self, account: str) -> datetime | None:
        """When a poll of ``account`` last finished well."""
        with self.transaction() as c:
            return _last_good_poll(c, account)

    # --- the digest's own bookkeeping ----------------------------------------------------

    def last_digest_due(self, account: str) -> datetime | None:
        with self.transaction() as c:
            value: datetime | None = c.execute(
                select(func.max(digests.c.due_at)).where(digests.c.account == account)
            ).scalar_one_or_none()
            return value

    def digest_sent(self, account: str, due_at: datetime, now: datetime,
                    message_id: str) -> None:
        with self.transaction() as c:
            c.execute(digests.insert().values(account=account, due_at=due_at, sent_at=now,
                                              message_id=message_id))

    def digest_claim(self, account: str, due_at: datetime, now: datetime,
                     message_id: str) -> bool:
        """Claim the digest for ``due_at`` before sending it; False if it was claimed already.

        The claim is written first so that two daemons, or a crash after sending, can never send
        one digest twice; :meth:`digest_release` gives it back when the send surely failed.
        """
        try:
            with self.engine.begin() as c:
                c.execute(digests.insert().values(account=account, due_at=due_at, sent_at=now,
                                                  message_id=message_id))
        except IntegrityError:
            return False
        except SQLAlchemyError as exc:
            raise StoreError(f"database write failed: {type(exc).__name__}") from None
        return True

    def digest_release(self, account: str, due_at: datetime) -> None:
        """Undo :meth:`digest_claim` after a send that certainly did not go out."""
        with self.transaction() as c:
            c.execute(digests.delete().where(digests.c.account == account,
                                             digests.c.due_at == due_at))
