"""What waits for the counselor, in the store, and what the counselor does about it.

Replies decided in review mode wait in the outbox with status ``review``. This module lists them
(``waiting``), approves them (``queued``: the normal outbox sends them at the next poll, under
the Message-ID fixed when they were decided), rejects them (``rejected``, and the notification is
resolved), readdresses one and shows one exactly as it would go out. The store's ``settle`` is
the one place a review status changes, for the commands here and for an answer to a review
email (``modbot.review``); its ``resolve`` closes held items (the digest's numbers, ``modbot
resolve``), for the command and for an answer to the digest alike.

This module must never read the clock (``now`` comes in), send mail, or change a reply that no
longer waits for review: every change is conditional on status ``review`` in the same statement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.headerregistry import Address

from modbot import render
from modbot.config import Account
from modbot.model import Person, Recipient
from modbot.store import OutboxStatus, Store

__all__ = [
    "ReviewOutcome",
    "Waiting",
    "age_text",
    "approve",
    "preview",
    "readdress",
    "reject",
    "resolve",
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


def waiting(store: Store, account: str, now: datetime) -> list[Waiting]:
    """Every reply of ``account`` with status ``review``, oldest first."""
    return [Waiting(w.id, w.kind, w.template, w.person_name, w.recipient_name,
                    w.recipient_email, w.redirected_to, now - w.created_at,
                    (w.reasons or ("",))[0])
            for w in store.waiting(account)]


def resolve(store: Store, account: str, items: Sequence[int] | None,
            now: datetime) -> ReviewOutcome:
    """Close ``account``'s held items ``items`` (None: all of them), as ``modbot resolve``
    does; each number that names no held item of ``account`` gets a finding."""
    resolved, missing = store.resolve(account, None if items is None else set(items), now)
    return ReviewOutcome(bool(resolved), resolved=resolved, findings=tuple(
        f"Number {i} is not a held item, so nothing was done with it." for i in missing))


def _by_hand(store: Store, account: str, ids: Sequence[int] | None, now: datetime, *,
             approving: bool) -> ReviewOutcome:
    chosen = None if ids is None else list(ids)
    approved, rejected, missing = store.settle(
        account, chosen if approving else [], [] if approving else chosen, now)
    return ReviewOutcome(True, approved, rejected, tuple(
        f"Number {i} does not wait for review, so it was left alone." for i in missing))


def approve(store: Store, account: str, ids: Sequence[int] | None,
            now: datetime) -> ReviewOutcome:
    """Approve ``account``'s waiting replies ``ids`` (None: all of them) for the next poll."""
    return _by_hand(store, account, ids, now, approving=True)


def reject(store: Store, account: str, ids: Sequence[int] | None,
           now: datetime) -> ReviewOutcome:
    """Reject ``account``'s waiting replies ``ids`` (None: all of them); nothing will be sent."""
    return _by_hand(store, account, ids, now, approving=False)


def readdress(store: Store, account: str, item_id: int, address: str) -> bool:
    """Send ``account``'s waiting reply ``item_id`` to ``address`` instead; False if it does
    not wait.

    Raises ``ValueError`` unless ``address`` is one plain ASCII address.
    """
    try:
        plain = Address(addr_spec=address.strip())
    except (ValueError, IndexError) as exc:
        raise ValueError("not one plain email address") from exc
    if not plain.addr_spec.isascii() or not plain.domain or "." not in plain.domain:
        raise ValueError("not one plain email address")
    return store.readdress(account, item_id, plain.addr_spec)


def preview(store: Store, settings: Account, templates: render.Templates,
            item_id: int) -> tuple[str, str] | None:
    """(address, text) of waiting reply ``item_id`` exactly as it would go out, else None."""
    found = [i for i in store.items(settings.account, OutboxStatus.REVIEW) if i.id == item_id]
    if not found:
        return None
    item = found[0]
    text = render.reply_text(
        templates, template=item.template, counselor=settings.counselor,
        recipient=Recipient(item.recipient_name or "", item.recipient_email, "outbox"),
        person=Person(name=item.person_name))
    return item.redirected_to or item.recipient_email, text
