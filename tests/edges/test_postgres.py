"""The same store and migrations on SQLite and on a real PostgreSQL.

Every check here runs on both backends; the PostgreSQL cluster is started once per test run
(``postgres`` in ``tests/conftest.py``) and each test gets a fresh database.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, select
from support import rows

from modbot import store
from modbot.errors import StoreError
from modbot.store import MessageRecord, OutboxStatus, Store, schema

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ACCOUNT = "counselor@imap.counsel.example.edu"


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database on each backend, for the tests of the migrations."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'modbot.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database on each backend; on PostgreSQL a copy of one migrated once per run."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'modbot.db'}"
    return str(request.getfixturevalue("postgres_migrated_url"))


@pytest.fixture
def db(url: str) -> Iterator[Store]:
    opened = Store.open(url)
    yield opened
    opened.close()


def message_row(key: str, **overrides: object) -> MessageRecord:
    return rows.message_row(key, ACCOUNT, **overrides)


def test_open_migrates_an_empty_database(empty_url: str) -> None:
    """Opening an empty database creates every table and stamps the latest revision."""
    db = Store.open(empty_url)
    try:
        tables = set(inspect(db.engine).get_table_names())
        assert set(store.metadata.tables) | {"alembic_version"} <= tables
        with db.engine.connect() as connection:
            assert MigrationContext.configure(connection).get_current_revision() is not None
    finally:
        db.close()


def test_migrations_match_models(empty_url: str) -> None:
    """The alembic migrations build exactly the schema the code declares, which is what a new
    database gets directly."""
    engine = create_engine(empty_url)
    try:
        store.migrate(engine)
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, store.metadata) == []
            assert context.get_current_revision() == store.HEAD_REVISION
    finally:
        engine.dispose()


def test_new_database_needs_no_alembic(empty_url: str) -> None:
    """A new database is created from the table definitions, stamped at head, without loading
    alembic (about 12 MB that a long-running daemon would otherwise keep)."""
    program = ("import sys; from modbot.store import Store; "
               f"Store.open({empty_url!r}).close(); print('alembic' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                            check=True, timeout=60)
    assert result.stdout.strip() == "False"
    engine = create_engine(empty_url)
    try:
        with engine.connect() as connection:
            assert MigrationContext.configure(connection).get_current_revision() \
                == store.HEAD_REVISION
    finally:
        engine.dispose()


def test_reopening_migrates_nothing(empty_url: str) -> None:
    """A second start on a migrated database finds nothing to do and keeps the data."""
    first = Store.open(empty_url)
    first.set_cursor(ACCOUNT, "INBOX", 7, 42, NOW)
    first.close()
    again = Store.open(empty_url)
    try:
        assert again.cursor(ACCOUNT, "INBOX", 7) == 42
    finally:
        again.close()


def test_cursor_round_trip(db: Store) -> None:
    """A cursor is kept per account, folder and UIDVALIDITY."""
    assert db.cursor(ACCOUNT, "INBOX", 7) is None
    assert not db.has_any_cursor(ACCOUNT, "INBOX")
    db.set_cursor(ACCOUNT, "INBOX", 7, 42, NOW)
    db.set_cursor(ACCOUNT, "INBOX", 7, 43, NOW)
    assert db.cursor(ACCOUNT, "INBOX", 7) == 43
    assert db.cursor(ACCOUNT, "INBOX", 8) is None
    assert db.has_any_cursor(ACCOUNT, "INBOX")


def test_cursor_keeps_the_largest_imap_uid(db: Store, request: pytest.FixtureRequest) -> None:
    """UIDs and UIDVALIDITY are unsigned 32-bit numbers (RFC 3501), up to 4294967295."""
    biggest = 2**32 - 1
    db.set_cursor(ACCOUNT, "INBOX", biggest, biggest, NOW)
    db.record(message_row("k1", uidvalidity=biggest, uid=biggest), None)
    assert db.cursor(ACCOUNT, "INBOX", biggest) == biggest


def test_record_and_dedup_facts(db: Store) -> None:
    """A recorded reply counts for the person, the invitation and the caps."""
    db.record(message_row("k1"), rows.reply_row("<m1@counsel.example.edu>"))
    assert db.known_keys(ACCOUNT, ["k1", "k2"]) == {"k1"}
    assert db.known_keys("someone-else", ["k1"]) == set()
    (replied,) = db.replied(ACCOUNT, NOW - timedelta(days=1))
    assert (replied.email, replied.invitation_id) == ("JRivera@students.example.edu", "701")
    assert replied.created_at == NOW
    assert db.is_our_message_id(["<m1@counsel.example.edu>"])
    assert not db.is_our_message_id(["<other@counsel.example.edu>"])


def test_known_keys_in_large_batches(db: Store) -> None:
    """Looking up more keys than one chunk finds every recorded one."""
    for n in range(3):
        db.record(message_row(f"k{n}", uid=n), None)
    keys = [f"k{n}" for n in range(1200)]
    assert db.known_keys(ACCOUNT, keys) == {"k0", "k1", "k2"}


def test_same_message_twice_is_refused(db: Store) -> None:
    """The unique message key makes a second record of the same message fail, and the store
    stays usable after the failed transaction."""
    db.record(message_row("k1"), None)
    with pytest.raises(StoreError):
        db.record(message_row("k1"), None)
    assert db.known_keys(ACCOUNT, ["k1"]) == {"k1"}


def test_failed_reply_rolls_back_its_message(db: Store) -> None:
    """A message and its reply are one transaction: a refused reply leaves no message row."""
    db.record(message_row("k1"), rows.reply_row("<m1@x>"))
    with pytest.raises(StoreError):
        db.record(message_row("k2", uid=2), rows.reply_row("<m1@x>"))  # Message-ID taken
    assert db.known_keys(ACCOUNT, ["k2"]) == set()


def test_outbox_state_machine(db: Store) -> None:
    """Queued replies are due; a row left sending is in flight; sent rows are neither."""
    item_id = db.record(message_row("k1"), rows.reply_row("<m1@x>"))
    assert item_id is not None
    assert [i.id for i in db.due(ACCOUNT, NOW)] == [item_id]
    db.hand_over(sent=None, sending=item_id, now=NOW)
    assert db.due(ACCOUNT, NOW) == []
    assert [i.attempts for i in db.in_flight(ACCOUNT)] == [1]
    db.hand_over(sent=item_id, sending=None, now=NOW)
    assert db.in_flight(ACCOUNT) == []
    assert [i.status for i in db.items(ACCOUNT, OutboxStatus.SENT)] == [OutboxStatus.SENT]


def test_retry_waits_for_backoff(db: Store) -> None:
    """A temporarily failed reply is due only after its next attempt time."""
    item_id = db.record(message_row("k1"), rows.reply_row("<m1@x>"))
    assert item_id is not None
    db.mark(item_id, OutboxStatus.RETRY, now=NOW,
            next_attempt_at=NOW + timedelta(minutes=4))
    assert db.due(ACCOUNT, NOW) == []
    assert len(db.due(ACCOUNT, NOW + timedelta(minutes=5))) == 1


def test_times_come_back_in_utc(db: Store) -> None:
    """A time written in another zone is read back as the same instant, in UTC."""
    chicago = datetime(2026, 11, 23, 6, 0, tzinfo=UTC).astimezone(ZoneInfo("America/Chicago"))
    db.record(message_row("k1", seen_at=chicago), None)
    rows = db.items_between(ACCOUNT, NOW - timedelta(hours=7), NOW)
    assert [r.seen_at for r in rows] == [datetime(2026, 11, 23, 6, 0, tzinfo=UTC)]
    assert rows[0].reasons == ("because",)


def test_open_items_and_polls(db: Store) -> None:
    """Held items are open until resolved; the last good poll is the latest successful one."""
    db.record(message_row("k1", action="hold"), None)
    assert [r.message_key for r in db.open_items(ACCOUNT)] == ["k1"]
    assert db.last_good_poll(ACCOUNT) is None
    first = db.poll_started(ACCOUNT, NOW)
    db.poll_finished(first, NOW + timedelta(seconds=3), ok=True, new_messages=1)
    failed = db.poll_started(ACCOUNT, NOW + timedelta(minutes=5))
    db.poll_finished(failed, NOW + timedelta(minutes=5, seconds=1), ok=False, new_messages=0,
                     error="the server refused the credentials")
    assert db.last_good_poll(ACCOUNT) == NOW + timedelta(seconds=3)
    assert [p.ok for p in db.polls_between(ACCOUNT, NOW, NOW + timedelta(hours=1))] == [True, False]


def test_digest_bookkeeping(db: Store) -> None:
    """The latest digest due time is remembered per account."""
    assert db.last_digest_due(ACCOUNT) is None
    db.digest_sent(ACCOUNT, NOW, NOW, "<d1@x>")
    db.digest_sent(ACCOUNT, NOW + timedelta(days=7), NOW + timedelta(days=7), "<d2@x>")
    assert db.last_digest_due(ACCOUNT) == NOW + timedelta(days=7)
    with db.engine.connect() as connection:
        ids = connection.execute(select(schema.digests.c.message_id)).scalars().all()
    assert sorted(ids) == ["<d1@x>", "<d2@x>"]


def test_unreachable_database_is_one_sentence(postgres_url: str) -> None:
    """A PostgreSQL that cannot be reached is a StoreError naming no host, user or password."""
    broken = postgres_url.replace("modbot@", "modbot:canary-pw@").replace(
        "port=", "port=1")  # a socket file that does not exist
    with pytest.raises(StoreError) as caught:
        Store.open(broken)
    assert "canary-pw" not in str(caught.value) and "mbpg-" not in str(caught.value)
