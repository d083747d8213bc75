"""The poll's statements: cursors, recording what was decided, the outbox, polls, pauses,
and the retention purge.

Each method that reads or changes an account's rows takes that account: the pollers of several
inboxes share one database and never see each other's work. The statements run at every poll
are built once, at import.

This module must never put row values in logs or exception text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import fields
from datetime import datetime
from typing import Any

from sqlalchemy import String, bindparam, select, update
from sqlalchemy.engine import Connection

from modbot.records import (
    COUNTS_AS_REPLIED,
    MessageRecord,
    OutboxItem,
    OutboxStatus,
    Pause,
    Replied,
    ReplyRecord,
)
from modbot.store.database import Database
from modbot.store.schema import cursors, messages, outbox, pauses, polls

S = OutboxStatus

# Statements of the reply history, read at every poll with new mail: built once.
_REPLIED = outbox.c.status.in_(COUNTS_AS_REPLIED)
_ACCOUNT = bindparam("account", type_=String())
# Shadow replies too: they count as answered for decisions made in shadow mode (history.py).
_REPLIED_ROWS = (
    select(outbox.c.recipient_email, messages.c.profile_url, messages.c.invitation_id,
           outbox.c.created_at, (outbox.c.status == S.SHADOW).label("shadow"))
    .join(messages, messages.c.id == outbox.c.message_row)
    .where(messages.c.account == _ACCOUNT, _REPLIED | (outbox.c.status == S.SHADOW),
           (outbox.c.created_at >= bindparam("since")) | messages.c.invitation_id.is_not(None))
)
_OUR_MESSAGE_IDS = select(outbox.c.id).where(
    outbox.c.message_id.in_(bindparam("ids", expanding=True))).limit(1)
_OUTBOX_ITEMS = (
    select(
        outbox.c.id, outbox.c.message_row, outbox.c.message_id, outbox.c.template,
        outbox.c.recipient_name, outbox.c.recipient_email, outbox.c.redirected_to,
        outbox.c.status, outbox.c.attempts, messages.c.person_name, messages.c.profile_url,
    )
    .join(messages, messages.c.id == outbox.c.message_row)
    .order_by(outbox.c.id)
)
_DUE = _OUTBOX_ITEMS.where(
    messages.c.account == bindparam("account"),
    (outbox.c.status == S.QUEUED)
    | ((outbox.c.status == S.RETRY) & (outbox.c.next_attempt_at <= bindparam("now"))))
_INSERT_POLL = polls.insert()
_MARK_SENT = update(outbox).where(outbox.c.id == bindparam("item")).values(
    status=S.SENT.value, last_error=None, next_attempt_at=None, sent_at=bindparam("now"))
# A compare-and-set: of two processes that both found the reply due, one wins.
_MARK_SENDING = update(outbox).where(
    outbox.c.id == bindparam("item"), outbox.c.status.in_((S.QUEUED.value, S.RETRY.value))
).values(status=S.SENDING.value, last_error=None, next_attempt_at=None,
         attempts=outbox.c.attempts + 1)
_UNCLAIM = update(outbox).where(
    outbox.c.id == bindparam("item"), outbox.c.status == S.SENDING.value
).values(status=S.QUEUED.value, attempts=outbox.c.attempts - 1)


def _outbox_item(row: Any) -> OutboxItem:
    values = dict(row._mapping)
    values["status"] = S(values["status"])
    return OutboxItem(**values)


def _values(record: MessageRecord | ReplyRecord) -> dict[str, Any]:
    """A record's fields as column values: a field is a column of the same name."""
    return {f.name: getattr(record, f.name) for f in fields(record)}



def _first_pause(c: Connection, condition: Any) -> Pause | None:
    row = c.execute(
        select(pauses.c.id, pauses.c.account, pauses.c.reason, pauses.c.started_at,
               pauses.c.alert_message_id, pauses.c.alert_attempted_at,
               pauses.c.alert_sent_at)
        .where(condition).order_by(pauses.c.id).limit(1)
    ).first()
    return None if row is None else Pause(**row._mapping)


def active_pause(c: Connection, account: str) -> Pause | None:
    """The pause that stops ``account``'s replies now, if any, read on ``c``."""
    return _first_pause(c, (pauses.c.account == account) & pauses.c.resumed_at.is_(None))


class PollStatements(Database):
    """What one poll of one account reads and writes."""

    # --- cursors -------------------------------------------------------------------------

    def cursor(self, account: str, folder: str, uidvalidity: int) -> int | None:
        with self.transaction() as c:
            return c.execute(
                select(cursors.c.last_uid).where(
                    cursors.c.account == account,
                    cursors.c.folder == folder,
                    cursors.c.uidvalidity == uidvalidity,
                )
            ).scalar_one_or_none()

    def has_any_cursor(self, account: str, folder: str) -> bool:
        with self.transaction() as c:
            found = c.execute(
                select(cursors.c.last_uid).where(
                    cursors.c.account == account, cursors.c.folder == folder
                ).limit(1)
            ).first()
            return found is not None

    def set_cursor(self, account: str, folder: str, uidvalidity: int, last_uid: int,
                   now: datetime) -> None:
        with self.transaction() as c:
            changed = c.execute(
                update(cursors)
                .where(
                    cursors.c.account == account,
                    cursors.c.folder == folder,
                    cursors.c.uidvalidity == uidvalidity,
                )
                .values(last_uid=last_uid, updated_at=now)
            ).rowcount
            if not changed:
                c.execute(cursors.insert().values(
                    account=account, folder=folder, uidvalidity=uidvalidity,
                    last_uid=last_uid, updated_at=now,
                ))

    # --- messages and decisions ----------------------------------------------------------

    def known_keys(self, account: str, keys: Sequence[str]) -> set[str]:
        """Which of ``keys`` were already handled for ``account``."""
        return set(self.known_kinds(account, keys))

    def known_kinds(self, account: str, keys: Sequence[str]) -> dict[str, str]:
        """The stored kind of each of ``keys`` that was already handled for ``account``."""
        found: dict[str, str] = {}
        with self.transaction() as c:
            for start in range(0, len(keys), 500):
                chunk = list(keys[start:start + 500])
                found.update((row.message_key, row.kind) for row in c.execute(
                    select(messages.c.message_key, messages.c.kind).where(
                        messages.c.account == account, messages.c.message_key.in_(chunk)
                    )
                ))
        return found

    def record(self, message: MessageRecord, reply: ReplyRecord | None) -> int | None:
        """Record a message and its decision, plus its outbox row, in one transaction.

        Returns the outbox row id, or None when there is no reply.
        """
        values = _values(message)
        values["reasons"] = json.dumps(list(message.reasons))
        with self.transaction() as c:
            row = c.execute(messages.insert().values(**values)).inserted_primary_key
            assert row is not None
            if reply is None:
                return None
            result = c.execute(outbox.insert().values(message_row=row[0], attempts=0,
                                                      **_values(reply)))
            key = result.inserted_primary_key
            assert key is not None
            return int(key[0])

    def replied(self, account: str, since: datetime) -> list[Replied]:
        """``account``'s replies that count as answered and were made since ``since``, or that
        answer an invitation (which is answered once, however long ago): what the policy's
        history facts are made from, read once per poll."""
        with self.transaction() as c:
            return [Replied(*row) for row in c.execute(_REPLIED_ROWS, {"account": account,
                                                                      "since": since})]

    def is_our_message_id(self, message_ids: Sequence[str]) -> bool:
        """True if any of ``message_ids`` is a reply modbot sent (for answers to the bot)."""
        ids = [m.strip() for m in message_ids if m.strip()]
        if not ids:
            return False
        with self.transaction() as c:
            return c.execute(_OUR_MESSAGE_IDS, {"ids": ids}).first() is not None

    # --- outbox --------------------------------------------------------------------------

    def due(self, account: str, now: datetime) -> list[OutboxItem]:
        """``account``'s replies ready to send: queued, or temporarily failed and past their
        backoff. Each account sends its own replies, from its own counselor, over its own SMTP
        server. Asked at every poll, so the statement is built once."""
        with self.transaction() as c:
            return [_outbox_item(row)
                    for row in c.execute(_DUE, {"now": now, "account": account})]

    def items(self, account: str, status: OutboxStatus) -> list[OutboxItem]:
        """``account``'s replies in ``status``, oldest first."""
        with self.transaction() as c:
            return [_outbox_item(row) for row in c.execute(_OUTBOX_ITEMS.where(
                outbox.c.status == status, messages.c.account == account))]

    def in_flight(self, account: str) -> list[OutboxItem]:
        """``account``'s rows left in "sending" by a crash between send and record."""
        return self.items(account, S.SENDING)

    def statuses(self, item_ids: Sequence[int]) -> dict[int, OutboxStatus]:
        """The current status of each outbox row in ``item_ids``."""
        with self.transaction() as c:
            return {row.id: S(row.status) for row in c.execute(
                select(outbox.c.id, outbox.c.status).where(outbox.c.id.in_(list(item_ids))))}

    def mark(self, item_id: int, status: OutboxStatus, *, now: datetime,
             error: str | None = None, next_attempt_at: datetime | None = None) -> None:
        """Set a reply's status outside the send loop's hand-overs (see ``hand_over``)."""
        values: dict[str, Any] = {"status": status.value, "last_error": error,
                                  "next_attempt_at": next_attempt_at}
        if status is S.SENT:
            values["sent_at"] = now
        with self.transaction() as c:
            c.execute(update(outbox).where(outbox.c.id == item_id).values(**values))

    def hand_over(self, *, sent: int | None, sending: int | None, now: datetime) -> bool:
        """In one transaction: record ``sent`` as sent and ``sending`` as being sent (counting
        an attempt), what the send loop records between two replies. False when ``sending``
        was no longer queued or due for a retry: another process claimed it, or it was settled.
        """
        with self.transaction() as c:
            if sent is not None:
                c.execute(_MARK_SENT, {"item": sent, "now": now})
            if sending is not None:
                return bool(c.execute(_MARK_SENDING, {"item": sending}).rowcount)
        return True

    def unclaim(self, item_id: int) -> None:
        """Give back a reply marked "sending" that was surely not sent, so it is due again;
        nothing if another process has resolved it meanwhile."""
        with self.transaction() as c:
            c.execute(_UNCLAIM, {"item": item_id})

    # --- polls ---------------------------------------------------------------------------

    def poll_started(self, account: str, now: datetime) -> int:
        with self.transaction() as c:
            key = c.execute(polls.insert().values(account=account, started_at=now, ok=False,
                                                  new_messages=0)).inserted_primary_key
            assert key is not None
            return int(key[0])

    def poll_finished(self, poll_id: int, now: datetime, *, ok: bool, new_messages: int,
                      error: str | None = None) -> None:
        with self.transaction() as c:
            c.execute(update(polls).where(polls.c.id == poll_id).values(
                finished_at=now, ok=ok, new_messages=new_messages, error=error))

    def record_poll(self, account: str, now: datetime, *, ok: bool, new_messages: int,
                    error: str | None = None) -> None:
        """Record a poll that started and finished at ``now``, in one statement."""
        with self.transaction() as c:
            c.execute(_INSERT_POLL, {"account": account, "started_at": now, "finished_at": now,
                                     "ok": ok, "new_messages": new_messages, "error": error})

    # --- pauses --------------------------------------------------------------------------

    def _pause(self, condition: Any) -> Pause | None:
        with self.transaction() as c:
            return _first_pause(c, condition)

    def active_pause(self, account: str) -> Pause | None:
        """The pause that stops ``account``'s replies now, if any."""
        with self.transaction() as c:
            return active_pause(c, account)

    def start_pause(self, account: str, reason: str, now: datetime,
                    alert_message_id: str) -> Pause:
        """Pause ``account``'s replies (or return the pause already in force)."""
        with self.transaction() as c:
            active = c.execute(select(pauses.c.id).where(
                pauses.c.account == account, pauses.c.resumed_at.is_(None)).limit(1)).first()
            if active is None:
                c.execute(pauses.insert().values(account=account, reason=reason,
                                                 started_at=now,
                                                 alert_message_id=alert_message_id))
        found = self.active_pause(account)
        assert found is not None
        return found

    def alert_due(self, account: str) -> Pause | None:
        """An active pause whose alert was never attempted."""
        return self._pause((pauses.c.account == account) & pauses.c.resumed_at.is_(None)
                           & pauses.c.alert_attempted_at.is_(None))

    def claim_alert(self, pause_id: int, *, now: datetime) -> bool:
        """Mark the pause's alert attempted before it is sent; False if it already was."""
        with self.transaction() as c:
            return bool(c.execute(update(pauses).where(
                pauses.c.id == pause_id, pauses.c.alert_attempted_at.is_(None)
            ).values(alert_attempted_at=now)).rowcount)

    def mark_alert(self, pause_id: int, *, now: datetime, attempted: bool = False,
                   sent: bool = False, released: bool = False) -> None:
        """Record the alert's progress: attempted (claimed), sent, or released for a retry."""
        values: dict[str, Any] = {}
        if attempted:
            values["alert_attempted_at"] = now
        if sent:
            values["alert_sent_at"] = now
        if released:
            values["alert_attempted_at"] = None
        with self.transaction() as c:
            c.execute(update(pauses).where(pauses.c.id == pause_id).values(**values))

    def resume(self, account: str, now: datetime) -> int:
        """End ``account``'s pause so replies go out again; returns how many pauses ended."""
        with self.transaction() as c:
            return int(c.execute(
                update(pauses).where(pauses.c.account == account, pauses.c.resumed_at.is_(None))
                .values(resumed_at=now)
            ).rowcount)

    # --- retention -----------------------------------------------------------------------

    def purge(self, account: str, before: datetime, now: datetime) -> int:
        """Remove people's facts from rows seen before ``before``; returns how many rows.

        Names, profile links, invitation ids, reasons (which may quote a name) and reply
        addresses go; kind, action, rule and times stay for the digest's counts. With
        ``secure_delete`` the old values are overwritten in the file, and the WAL is truncated
        so that no older copy of a page survives there either.
        """
        old = select(messages.c.id).where(
            messages.c.account == account, messages.c.seen_at < before,
            messages.c.purged_at.is_(None))
        with self.transaction() as c:
            c.execute(update(outbox).where(outbox.c.message_row.in_(old)).values(
                recipient_name=None, recipient_email="", redirected_to=None, last_error=None))
            count = int(c.execute(update(messages).where(messages.c.id.in_(old)).values(
                person_name=None, profile_url=None, invitation_id=None,
                reasons=json.dumps(["details removed after the retention period"]),
                purged_at=now)).rowcount)
        if count and self.engine.dialect.name == "sqlite":
            with self.transaction() as c:
                c.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        return count
