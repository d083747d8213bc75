"""Claims two daemons may race for: a reply marked "sending" and a pause's alert, each won by
one process only, on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.rows import NOW, message_row, reply_row

from modbot.store import OutboxStatus, Store

A = "counselor@imap"  # the account of rows.message_row


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'modbot.db'}"
    else:
        url = str(request.getfixturevalue("postgres_migrated_url"))
    opened = Store.open(url)
    yield opened
    opened.close()


def test_marking_sending_is_won_once(db: Store) -> None:
    """Of two processes that both found the reply due, only the first marks it "sending"."""
    item_id = db.record(message_row("k1"), reply_row("<m1@x>"))
    assert item_id is not None
    assert db.hand_over(sent=None, sending=item_id, now=NOW)
    assert not db.hand_over(sent=None, sending=item_id, now=NOW)
    assert [i.attempts for i in db.in_flight(A)] == [1]


def test_a_settled_reply_cannot_be_claimed(db: Store) -> None:
    """A reply resolved meanwhile (here: held as "may have been sent") is not sent."""
    item_id = db.record(message_row("k1"), reply_row("<m1@x>"))
    assert item_id is not None
    db.mark(item_id, OutboxStatus.UNCERTAIN, now=NOW)
    assert not db.hand_over(sent=None, sending=item_id, now=NOW)


def test_unclaim_gives_back_only_what_is_still_sending(db: Store) -> None:
    """A claim given back is due again; one resolved by another daemon stays resolved."""
    first = db.record(message_row("k1"), reply_row("<m1@x>"))
    second = db.record(message_row("k2"), reply_row("<m2@x>"))
    assert first is not None and second is not None
    db.hand_over(sent=None, sending=first, now=NOW)
    db.unclaim(first)
    assert [(i.id, i.attempts) for i in db.due(A, NOW)] == [(first, 0), (second, 0)]
    db.hand_over(sent=None, sending=second, now=NOW)
    db.mark(second, OutboxStatus.UNCERTAIN, now=NOW)
    db.unclaim(second)
    assert db.statuses([second]) == {second: OutboxStatus.UNCERTAIN}


def test_the_alert_is_claimed_once(db: Store) -> None:
    """Only one process may send a pause's alert."""
    pause = db.start_pause(A, "cap reached", NOW, "<alert@x>")
    assert db.claim_alert(pause.id, now=NOW)
    assert not db.claim_alert(pause.id, now=NOW)
    assert db.alert_due(A) is None
