"""What waits for the counselor, in the store, and what the counselor does about it.

Replies decided in review mode wait in the outbox with status ``review``. This module lists them
(``waiting``), approves them (``queued``: the normal outbox sends them at the next poll, under
the Message-ID fixed when they were decided), rejects them (``rejected``, and the notification is
resolved), readdresses one and shows one exactly as it would go out. ``settle`` is the one place
a status changes, for the commands here and for an answer to a review email (``modbot.review``).
``resolve_in`` closes held items (the digest's numbers, ``modbot resolve``), for the command and
for an answer to the digest alike.

This module must never read the clock (``now`` comes in), send mail, or change a reply that no
longer waits for review: every change is conditional on status ``review`` in the same statement.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.headerregistry import Address

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from modbot import render
from modbot.config import Settings
from modbot.model import Person, Recipient
from modbot.store import OPEN_ITEM, QUEUED, REJECTED, REVIEW, Store, messages, outbox

__all__ = [
    "ReviewOutcome",
    "Waiting",
    "age_text",
    "approve",
    "preview",
    "readdress",
    "reject",
    "resolve",
    "resolve_in",
    "settle",
    "waiting",
]


@dataclass(frozen=True)
class Waiting:
    """A reply waiting for the counselor, as the list and the review email show it."""

    id: int
    kind: str
    template: str
    person: str | None
    recipient_name: str | None
    recipient: str
    redirected_to: str | None
    age: timedelta
    reason: str  # the policy's own sentence; later reasons may quote the notification


@dataclass(frozen=True)
class ReviewOutcome:
    """What a decision did, and each thing it left alone or ignored, in one sentence apiece."""

    acted: bool
    approved: tuple[int, ...] = ()
    rejected: tuple[int, ...] = ()
    findings: tuple[str, ...] = ()
    resolved: tuple[int, ...] = ()  # held items closed (message rows)
    resumed: bool = False  # a pause of automatic replies ended


def age_text(age: timedelta) -> str:
    """``age`` the way a person says it: "5 min", "3 h", "2 d"."""
    minutes = max(int(age.total_seconds() // 60), 0)
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes // 60} h" if minutes < 48 * 60 else f"{minutes // 1440} d"


def waiting(store: Store, now: datetime) -> list[Waiting]:
    """Every reply with status ``review``, oldest first."""
    query = (
        select(outbox.c.id, messages.c.kind, outbox.c.template, messages.c.person_name,
               outbox.c.recipient_name, outbox.c.recipient_email, outbox.c.redirected_to,
               outbox.c.created_at, messages.c.reasons)
        .join(messages, messages.c.id == outbox.c.message_row)
        .where(outbox.c.status == REVIEW).order_by(outbox.c.id))
    with store.transaction() as c:
        rows = c.execute(query).all()
    return [Waiting(r.id, r.kind, r.template, r.person_name, r.recipient_name, r.recipient_email,
                    r.redirected_to, now - r.created_at, (json.loads(r.reasons) or [""])[0])
            for r in rows]


def settle(c: Connection, approve: set[int], reject: set[int],
            now: datetime) -> tuple[tuple[int, ...], tuple[int, ...], list[int]]:
    """Approve and reject the waiting replies among ``approve`` and ``reject``, inside ``c``.

    Returns (approved, rejected, asked for but not waiting), each sorted; a reply that no
    longer waits for review is never changed.
    """
    asked = approve | reject
    ready = set(c.execute(select(outbox.c.id).where(
        outbox.c.status == REVIEW, outbox.c.id.in_(asked))).scalars())
    approved, rejected = sorted(approve & ready), sorted(reject & ready)
    if approved:  # queued again under the same Message-ID; the poll's outbox sends it
        c.execute(update(outbox).where(outbox.c.id.in_(approved), outbox.c.status == REVIEW)
                  .values(status=QUEUED, last_error=None, next_attempt_at=None))
    if rejected:
        c.execute(update(outbox).where(outbox.c.id.in_(rejected), outbox.c.status == REVIEW)
                  .values(status=REJECTED))
        rows = select(outbox.c.message_row).where(outbox.c.id.in_(rejected))
        c.execute(update(messages).where(messages.c.id.in_(rows),
                                         messages.c.resolved_at.is_(None)).values(resolved_at=now))
    return tuple(approved), tuple(rejected), sorted(asked - ready)


def resolve_in(c: Connection, items: set[int] | None,
               now: datetime) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Close the held items ``items`` (None: every one), inside ``c``.

    Returns (resolved, asked for but not held), each sorted. A reply that still waits for
    review is rejected with its item: the counselor dealt with it, so it is never sent.
    """
    query = select(messages.c.id).select_from(
        messages.outerjoin(outbox, outbox.c.message_row == messages.c.id)).where(OPEN_ITEM)
    if items is not None:
        query = query.where(messages.c.id.in_(items))
    held = sorted(set(c.execute(query).scalars()))
    if held:
        c.execute(update(outbox).where(outbox.c.message_row.in_(held), outbox.c.status == REVIEW)
                  .values(status=REJECTED))
        c.execute(update(messages).where(messages.c.id.in_(held),
                                         messages.c.resolved_at.is_(None)).values(resolved_at=now))
    return tuple(held), tuple(sorted((items or set()) - set(held)))


def resolve(store: Store, items: Sequence[int] | None, now: datetime) -> ReviewOutcome:
    """Close the held items ``items`` (None: all of them), as ``modbot resolve`` does; each
    number that names no held item gets a finding."""
    with store.transaction() as c:
        resolved, missing = resolve_in(c, None if items is None else set(items), now)
    return ReviewOutcome(bool(resolved), resolved=resolved, findings=tuple(
        f"Number {i} is not a held item, so nothing was done with it." for i in missing))


def _by_hand(store: Store, ids: Sequence[int] | None, now: datetime, *,
             approving: bool) -> ReviewOutcome:
    with store.transaction() as c:
        chosen = set(ids) if ids is not None else set(
            c.execute(select(outbox.c.id).where(outbox.c.status == REVIEW)).scalars())
        approved, rejected, missing = settle(c, chosen if approving else set(),
                                              set() if approving else chosen, now)
    return ReviewOutcome(True, approved, rejected, tuple(
        f"Number {i} does not wait for review, so it was left alone." for i in missing))


def approve(store: Store, ids: Sequence[int] | None, now: datetime) -> ReviewOutcome:
    """Approve the waiting replies ``ids`` (None: all of them) for the next poll to send."""
    return _by_hand(store, ids, now, approving=True)


def reject(store: Store, ids: Sequence[int] | None, now: datetime) -> ReviewOutcome:
    """Reject the waiting replies ``ids`` (None: all of them); nothing will be sent."""
    return _by_hand(store, ids, now, approving=False)


def readdress(store: Store, item_id: int, address: str) -> bool:
    """Send waiting reply ``item_id`` to ``address`` instead; False if it does not wait.

    Raises ``ValueError`` unless ``address`` is one plain ASCII address.
    """
    try:
        plain = Address(addr_spec=address.strip())
    except (ValueError, IndexError) as exc:
        raise ValueError("not one plain email address") from exc
    if not plain.addr_spec.isascii() or not plain.domain or "." not in plain.domain:
        raise ValueError("not one plain email address")
    with store.transaction() as c:
        return bool(c.execute(update(outbox).where(
            outbox.c.id == item_id, outbox.c.status == REVIEW)
            .values(recipient_email=plain.addr_spec)).rowcount)


def preview(store: Store, settings: Settings, templates: render.Templates,
            item_id: int) -> tuple[str, str] | None:
    """(address, text) of waiting reply ``item_id`` exactly as it would go out, else None."""
    found = [i for i in store.items(REVIEW) if i.id == item_id]
    if not found:
        return None
    item = found[0]
    text = render.reply_text(
        templates, template=item.template, counselor=settings.counselor,
        recipient=Recipient(item.recipient_name or "", item.recipient_email, "outbox"),
        person=Person(name=item.person_name))
    return item.redirected_to or item.recipient_email, text
