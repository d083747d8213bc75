"""The store: migrations match the models, files are owner-only, and facts round-trip."""

from __future__ import annotations

import dataclasses
import stat
from datetime import timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from support.rows import NOW, message_row, reply_row

from modbot import store
from modbot.errors import StoreError
from modbot.store import OutboxStatus, Store, schema

A = "counselor@imap"  # the account of rows.message_row


@pytest.fixture
def db(tmp_path: Path) -> Store:
    opened = Store.open(f"sqlite:///{tmp_path / 'modbot.db'}")
    yield opened
    opened.close()


def test_migrations_match_models(db: Store) -> None:
    """The alembic migrations build exactly the schema the code declares."""
    with db.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), store.metadata) == []


def test_database_file_is_owner_only(tmp_path: Path) -> None:
    """A new SQLite database and its WAL files are created 0600."""
    path = tmp_path / "sub" / "modbot.db"
    opened = Store.open(f"sqlite:///{path}")
    opened.poll_started("a", NOW)
    for file in path.parent.iterdir():
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file.name
    opened.close()


@pytest.mark.parametrize(("table", "record", "bookkeeping"), [
    (schema.outbox, store.ReplyRecord, schema.OUTBOX_BOOKKEEPING),
    (schema.messages, store.MessageRecord, schema.MESSAGE_BOOKKEEPING),
])
def test_records_name_every_column(table: object, record: type, bookkeeping: frozenset[str]
                                   ) -> None:
    """Each column is a field of the record that writes the row, or one the store keeps
    itself: a new column without its field fails here, and everywhere a record is built."""
    columns = {column.name for column in table.columns}  # type: ignore[attr-defined]
    fields = {field.name for field in dataclasses.fields(record)}
    assert columns - bookkeeping == fields


def test_outbox_states_are_the_stored_strings() -> None:
    """The status values are in existing databases: they never change."""
    assert [s.value for s in store.OutboxStatus] == [
        "queued", "review", "shadow", "sending", "sent", "failed_temporary", "failed",
        "uncertain", "rejected"]


def test_another_accounts_replies_are_never_due(db: Store) -> None:
    """Each account sends its own replies: another's queued reply is neither due nor in
    flight for it."""
    item_id = db.record(message_row("k1", account="other@imap"), reply_row("<m1@x>"))
    assert db.due(A, NOW) == []
    assert [i.id for i in db.due("other@imap", NOW)] == [item_id]
    db.hand_over(sent=None, sending=item_id, now=NOW)
    assert db.in_flight(A) == []


def test_cursor_round_trip(db: Store) -> None:
    """A cursor is kept per account, folder and UIDVALIDITY."""
    assert db.cursor("a", "INBOX", 7) is None
    db.set_cursor("a", "INBOX", 7, 42, NOW)
    db.set_cursor("a", "INBOX", 7, 43, NOW)
    assert db.cursor("a", "INBOX", 7) == 43
    assert db.cursor("a", "INBOX", 8) is None
    assert db.has_any_cursor("a", "INBOX")


def test_record_and_dedup_facts(db: Store) -> None:
    """A recorded reply counts for the person, the invitation and the caps."""
    db.record(message_row("k1"), reply_row("<m1@counsel.example.edu>"))
    assert db.known_keys("counselor@imap", ["k1", "k2"]) == {"k1"}
    (replied,) = db.replied("counselor@imap", NOW - timedelta(days=1))
    assert (replied.email, replied.invitation_id) == ("JRivera@students.example.edu", "701")
    assert replied.created_at == NOW
    assert db.replied("someone@imap", NOW - timedelta(days=1)) == []
    assert db.is_our_message_id(["<m1@counsel.example.edu>"])


def test_replied_keeps_invitations_beyond_the_window(db: Store) -> None:
    """An answered invitation is answered for good; an address only within the window."""
    db.record(message_row("k1"), reply_row("<m1@counsel.example.edu>"))
    db.record(message_row("k2", invitation_id=None), reply_row("<m2@counsel.example.edu>"))
    later = NOW + timedelta(days=1)
    assert [r.invitation_id for r in db.replied("counselor@imap", later)] == ["701"]


def test_same_message_twice_is_refused(db: Store) -> None:
    """The unique message key makes a second record of the same message fail."""
    db.record(message_row("k1"), None)
    with pytest.raises(StoreError):
        db.record(message_row("k1"), None)


def test_outbox_state_machine(db: Store) -> None:
    """Queued replies are due; a row left sending is in flight; sent rows are neither."""
    item_id = db.record(message_row("k1"), reply_row("<m1@x>"))
    assert item_id is not None
    assert [i.id for i in db.due(A, NOW)] == [item_id]
    db.hand_over(sent=None, sending=item_id, now=NOW)
    assert db.due(A, NOW) == []
    assert [i.attempts for i in db.in_flight(A)] == [1]
    db.hand_over(sent=item_id, sending=None, now=NOW)
    assert db.in_flight(A) == []


def test_retry_waits_for_backoff(db: Store) -> None:
    """A temporarily failed reply is due only after its next attempt time."""
    item_id = db.record(message_row("k1"), reply_row("<m1@x>"))
    assert item_id is not None
    db.mark(item_id, OutboxStatus.RETRY, now=NOW, next_attempt_at=NOW + timedelta(minutes=4))
    assert db.due(A, NOW) == []
    assert len(db.due(A, NOW + timedelta(minutes=5))) == 1


def test_message_key_hides_message_id() -> None:
    """The stored key is a hash, not the Message-ID itself."""
    key = store.message_key("<abc@lva1-app.prod.linkedin.com>", b"")
    assert "linkedin" not in key and len(key) == 64
    assert key == store.message_key("<ABC@lva1-app.prod.linkedin.com> ", b"")


def test_head_revision_is_the_newest_migration(db: Store) -> None:
    """store.HEAD_REVISION names alembic's head, so a current schema skips the migrations."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(store.migrations_dir()))
    assert ScriptDirectory.from_config(config).get_current_head() == store.HEAD_REVISION
    assert store.current_revision(db.engine) == store.HEAD_REVISION
