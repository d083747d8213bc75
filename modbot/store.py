"""The source of truth: messages seen, decisions, the outbox, cursors and polls.

SQLite by default (created owner-only, WAL, foreign keys, busy timeout, secure delete), any
SQLAlchemy URL otherwise. The schema changes only through the alembic migrations in
``migrations/``, applied by :meth:`Store.open`. The store holds only what the work needs: never
a message body, never a subject; inbound Message-IDs are kept as hashes.

This module must never put row values in logs or exception text (``hide_parameters=True``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    bindparam,
    create_engine,
    event,
    func,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from modbot.errors import StoreError


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


metadata = MetaData()

cursors = Table(
    "cursors",
    metadata,
    Column("account", String(320), primary_key=True),
    Column("folder", String(255), primary_key=True),
    Column("uidvalidity", BigInteger, primary_key=True),  # unsigned 32-bit (RFC 3501)
    Column("last_uid", BigInteger, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

messages = Table(
    "messages",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("account", String(320), nullable=False),
    Column("message_key", String(64), nullable=False),  # sha256 of the Message-ID or headers
    Column("folder", String(255), nullable=False),
    Column("uidvalidity", BigInteger, nullable=False),
    Column("uid", BigInteger, nullable=False),
    Column("seen_at", UTCDateTime, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("authentic", Boolean, nullable=True),
    Column("classify_rule", String(64), nullable=False),
    Column("person_name", String(200), nullable=True),
    Column("profile_url", String(500), nullable=True),
    Column("invitation_id", String(64), nullable=True),
    Column("address_source", String(64), nullable=True),
    Column("action", String(16), nullable=False),
    Column("policy_rule", String(64), nullable=False),
    Column("reasons", Text, nullable=False),  # JSON list of one-sentence reasons
    Column("error", Text, nullable=True),
    Column("resolved_at", UTCDateTime, nullable=True),  # a held item the counselor closed
    # Set when the retention period removed the person's facts from this row and its reply.
    Column("purged_at", UTCDateTime, nullable=True),
    UniqueConstraint("account", "message_key", name="uq_messages_account_key"),
    Index("ix_messages_account_seen_at", "account", "seen_at"),  # the digest's weeks
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("message_row", Integer, ForeignKey("messages.id"), nullable=False),
    Column("message_id", String(255), nullable=False, unique=True),  # fixed before sending
    Column("template", String(64), nullable=False),
    Column("recipient_name", String(200), nullable=True),
    Column("recipient_email", String(320), nullable=False),
    Column("redirected_to", String(320), nullable=True),
    Column("status", String(24), nullable=False, index=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime, nullable=True),
)

polls = Table(
    "polls",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("account", String(320), nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=True),
    Column("ok", Boolean, nullable=False, default=False),
    Column("new_messages", Integer, nullable=False, default=0),
    Column("error", Text, nullable=True),
)

digests = Table(
    "digests",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("account", String(320), nullable=False),
    Column("due_at", UTCDateTime, nullable=False),  # the scheduled time this digest stands for
    Column("sent_at", UTCDateTime, nullable=False),
    Column("message_id", String(255), nullable=False),
    UniqueConstraint("account", "due_at", name="uq_digests_account_due"),
)

# A pause stops every automatic reply of an account until the counselor resumes. It starts when
# a cap is first reached; its one alert to the counselor is claimed (alert_attempted_at) before it
# is sent, so a crash can lose the alert but never send it twice.
pauses = Table(
    "pauses",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("account", String(320), nullable=False),
    Column("reason", Text, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("alert_message_id", String(255), nullable=False),
    Column("alert_attempted_at", UTCDateTime, nullable=True),
    Column("alert_sent_at", UTCDateTime, nullable=True),
    Column("resumed_at", UTCDateTime, nullable=True),
)

review_mails = Table(
    "review_mails",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("account", String(320), nullable=False),
    Column("message_id", String(255), nullable=False, unique=True),
    Column("token_hash", String(64), nullable=False),  # sha256 of the token, never the token
    # JSON: a review email's list of the outbox ids it listed, or a digest's
    # {"resolve": [the message rows it numbered]}; the digest's answers share these checks.
    Column("items", Text, nullable=False),
    Column("sent_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("used_at", UTCDateTime, nullable=True),
)


# Outbox states. A row is written before anything is sent ("queued"), marked "sending" in its
# own transaction just before the SMTP call, and "sent" right after. A row found in "sending" at
# start-up crashed in between: it is reconciled from the Sent folder or held as "uncertain".
QUEUED, REVIEW, SHADOW = "queued", "review", "shadow"
SENDING, SENT = "sending", "sent"
RETRY, FAILED, UNCERTAIN, REJECTED = "failed_temporary", "failed", "uncertain", "rejected"
COUNTS_AS_REPLIED = (QUEUED, REVIEW, SENDING, SENT, RETRY, UNCERTAIN)


def message_key(message_id: str | None, header_bytes: bytes) -> str:
    """A stable, non-reversible key: the Message-ID's hash, else the header block's."""
    basis = message_id.strip().lower().encode() if message_id else header_bytes
    return hashlib.sha256(basis).hexdigest()


# What waits for the counselor (a held item), over messages outer-joined to their reply.
OPEN_ITEM = messages.c.resolved_at.is_(None) & (
    (messages.c.action == "hold") | outbox.c.status.in_((REVIEW, FAILED, UNCERTAIN)))

# Statements of the reply history, read at every poll with new mail: built once.
_REPLIED = outbox.c.status.in_(COUNTS_AS_REPLIED)
_ACCOUNT = bindparam("account", type_=String())
# Shadow replies too: they count as answered for decisions made in shadow mode (history.py).
_REPLIED_ROWS = (
    select(outbox.c.recipient_email, messages.c.profile_url, messages.c.invitation_id,
           outbox.c.created_at, (outbox.c.status == SHADOW).label("shadow"))
    .join(messages, messages.c.id == outbox.c.message_row)
    .where(messages.c.account == _ACCOUNT, _REPLIED | (outbox.c.status == SHADOW),
           (outbox.c.created_at >= bindparam("since")) | messages.c.invitation_id.is_not(None))
)
_OUR_MESSAGE_IDS = select(outbox.c.id).where(
    outbox.c.message_id.in_(bindparam("ids", expanding=True))).limit(1)


@dataclass(frozen=True)
class Replied:
    """One reply that counts as answered, as the policy's history facts need it."""

    email: str
    profile_url: str | None
    invitation_id: str | None
    created_at: datetime
    shadow: bool = False  # decided in shadow mode: recorded, never sent


@dataclass(frozen=True)
class OutboxItem:
    id: int
    message_row: int
    message_id: str
    template: str
    recipient_name: str | None
    recipient_email: str
    redirected_to: str | None
    status: str
    attempts: int
    person_name: str | None
    profile_url: str | None


@dataclass(frozen=True)
class Pause:
    id: int
    account: str
    reason: str
    started_at: datetime
    alert_message_id: str
    alert_attempted_at: datetime | None
    alert_sent_at: datetime | None


def quiet_library_loggers() -> None:
    """Hold SQLAlchemy's loggers at WARNING whatever level the application logs at.

    At INFO SQLAlchemy logs every statement and at DEBUG every result row: names, addresses and
    profile links of students. ``hide_parameters`` hides parameters but not rows.
    """
    for name in ("sqlalchemy", "sqlalchemy.engine", "sqlalchemy.pool", "alembic"):
        logger = logging.getLogger(name)
        if logger.level < logging.WARNING:
            logger.setLevel(logging.WARNING)


def _migrations_dir() -> Path:
    packaged = Path(__file__).parent / "migrations"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "migrations"


def _prepare_sqlite_file(url: str) -> None:
    """Create the SQLite file owner-only before SQLite creates it 0644."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)


def _sqlite_pragmas(busy_timeout: float) -> Callable[[Any, Any], None]:
    milliseconds = max(int(busy_timeout * 1000), 0)

    def connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        # Another writer (a second modbot, a counselor's sqlite3 shell) is waited for this long;
        # then the write fails as a StoreError and the poll is tried again next time.
        cursor.execute(f"PRAGMA busy_timeout={milliseconds}")
        # Purged names and addresses are overwritten with zeros, not left in free pages.
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.close()

    return connect


# The newest migration in migrations/versions; tests/test_store.py checks they agree. Knowing
# it lets a start-up with a current schema skip importing alembic (a quarter second).
HEAD_REVISION = "0005"

# Statements run at every poll, built once.
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
    (outbox.c.status == QUEUED)
    | ((outbox.c.status == RETRY) & (outbox.c.next_attempt_at <= bindparam("now"))))
_DUE_FOR_ACCOUNT = _DUE.where(messages.c.account == bindparam("account"))
_INSERT_POLL = polls.insert()
_MARK_SENT = update(outbox).where(outbox.c.id == bindparam("item")).values(
    status=SENT, last_error=None, next_attempt_at=None, sent_at=bindparam("now"))
_MARK_SENDING = update(outbox).where(outbox.c.id == bindparam("item")).values(
    status=SENDING, last_error=None, next_attempt_at=None, attempts=outbox.c.attempts + 1)


def current_revision(engine: Engine) -> str | None:
    """The schema's alembic revision, or None for a new database."""
    try:
        with engine.connect() as connection:
            value = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except SQLAlchemyError:
        return None
    return None if value is None else str(value)


def upgrade(engine: Engine) -> None:
    """Bring the schema to head: nothing to do when it is current; a new, empty database gets
    the tables as defined here, stamped with the head revision (the migrations build the same
    schema, which a test checks, and alembic stays out of the process); an older schema is
    migrated with alembic."""
    revision = current_revision(engine)
    if revision == HEAD_REVISION:
        return
    if revision is None and not inspect(engine).get_table_names():
        with engine.begin() as connection:
            metadata.create_all(connection)
            _alembic_version.create(connection)
            connection.execute(_alembic_version.insert().values(version_num=HEAD_REVISION))
        return
    migrate(engine)


def migrate(engine: Engine) -> None:
    """Apply the alembic migrations up to head."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_migrations_dir()))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


# alembic's own bookkeeping table, as alembic creates it.
_alembic_version = Table(
    "alembic_version", MetaData(),
    Column("version_num", String(32), nullable=False),
    PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)


class Store:
    """All reads and writes of modbot's state. Create it with :meth:`open`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str, *, migrate: bool = True, busy_timeout: float = 10.0) -> Store:
        """Open (creating owner-only if needed) and migrate the database at ``url``.

        ``busy_timeout`` is how many seconds a write waits for another process's write lock
        before it fails with ``StoreError``.
        """
        quiet_library_loggers()
        try:
            if url.startswith("sqlite"):
                _prepare_sqlite_file(url)
            engine = create_engine(url, hide_parameters=True, future=True)
            if engine.dialect.name == "sqlite":
                event.listen(engine, "connect", _sqlite_pragmas(busy_timeout))
            if migrate:
                upgrade(engine)
        except ImportError as exc:
            raise StoreError(
                f"the database driver {exc.name or 'for this URL'} is not installed "
                "(for PostgreSQL: pip install 'modbot[postgres]')") from None
        except (SQLAlchemyError, OSError) as exc:
            raise StoreError(f"cannot open the database: {type(exc).__name__}") from None
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction; any database failure becomes a ``StoreError``."""
        try:
            with self.engine.begin() as connection:
                yield connection
        except SQLAlchemyError as exc:
            raise StoreError(f"database write failed: {type(exc).__name__}") from None

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
        found: set[str] = set()
        with self.transaction() as c:
            for start in range(0, len(keys), 500):
                chunk = list(keys[start:start + 500])
                found.update(c.execute(
                    select(messages.c.message_key).where(
                        messages.c.account == account, messages.c.message_key.in_(chunk)
                    )
                ).scalars())
        return found

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

    def record(self, message: dict[str, Any], reply: dict[str, Any] | None) -> int | None:
        """Record a message and its decision, plus its outbox row, in one transaction.

        Returns the outbox row id, or None when there is no reply. ``reasons`` is a list.
        """
        values = dict(message)
        values["reasons"] = json.dumps(list(values["reasons"]))
        with self.transaction() as c:
            row = c.execute(messages.insert().values(**values)).inserted_primary_key
            assert row is not None
            if reply is None:
                return None
            result = c.execute(outbox.insert().values(message_row=row[0], attempts=0, **reply))
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

    def _items(self, condition: Any, params: dict[str, Any] | None = None) -> list[OutboxItem]:
        with self.transaction() as c:
            return [OutboxItem(**row._mapping)
                    for row in c.execute(_OUTBOX_ITEMS.where(condition), params or {})]

    def due(self, now: datetime, account: str | None = None) -> list[OutboxItem]:
        """Replies ready to send: queued, or temporarily failed and past their backoff.

        With ``account``, only replies to that account's messages: each account sends its own
        replies, from its own counselor, over its own SMTP server. Asked at every poll, so the
        statement is built once.
        """
        query = _DUE if account is None else _DUE_FOR_ACCOUNT
        with self.transaction() as c:
            return [OutboxItem(**row._mapping)
                    for row in c.execute(query, {"now": now, "account": account})]

    def in_flight(self, account: str | None = None) -> list[OutboxItem]:
        """Rows left in "sending" by a crash between send and record (of ``account``)."""
        sending = outbox.c.status == SENDING
        return self._items(sending if account is None
                           else sending & (messages.c.account == account))

    def statuses(self, item_ids: Sequence[int]) -> dict[int, str]:
        """The current status of each outbox row in ``item_ids``."""
        with self.transaction() as c:
            return {row.id: row.status for row in c.execute(
                select(outbox.c.id, outbox.c.status).where(outbox.c.id.in_(list(item_ids))))}

    def items(self, status: str) -> list[OutboxItem]:
        return self._items(outbox.c.status == status)

    def mark(self, item_id: int, status: str, *, now: datetime, error: str | None = None,
             next_attempt_at: datetime | None = None) -> None:
        """Set a reply's status outside the send loop's hand-overs (see ``hand_over``)."""
        values: dict[str, Any] = {"status": status, "last_error": error,
                                  "next_attempt_at": next_attempt_at}
        if status == SENT:
            values["sent_at"] = now
        with self.transaction() as c:
            c.execute(update(outbox).where(outbox.c.id == item_id).values(**values))

    def hand_over(self, *, sent: int | None, sending: int | None, now: datetime) -> None:
        """In one transaction: record ``sent`` as sent and ``sending`` as being sent (counting
        an attempt), what the send loop records between two replies."""
        with self.transaction() as c:
            if sent is not None:
                c.execute(_MARK_SENT, {"item": sent, "now": now})
            if sending is not None:
                c.execute(_MARK_SENDING, {"item": sending})

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

    # --- reading for reports -------------------------------------------------------------

    def messages_between(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """Message rows seen in [start, end), with their outbox status if any."""
        query = (
            select(messages, outbox.c.status.label("outbox_status"),
                   outbox.c.recipient_email, outbox.c.message_id.label("reply_message_id"),
                   outbox.c.last_error)
            .select_from(messages.outerjoin(outbox, outbox.c.message_row == messages.c.id))
            .where(messages.c.seen_at >= start, messages.c.seen_at < end)
            .order_by(messages.c.id)
        )
        with self.transaction() as c:
            rows = [dict(row._mapping) for row in c.execute(query)]
        for row in rows:
            row["reasons"] = json.loads(row["reasons"])
        return rows

    def open_items(self, account: str | None = None) -> list[dict[str, Any]]:
        """Everything still waiting for a person, whenever it arrived (of ``account``)."""
        query = (
            select(messages, outbox.c.status.label("outbox_status"),
                   outbox.c.recipient_email, outbox.c.message_id.label("reply_message_id"),
                   outbox.c.last_error)
            .select_from(messages.outerjoin(outbox, outbox.c.message_row == messages.c.id))
            .where(OPEN_ITEM)
            .order_by(messages.c.id)
        )
        if account is not None:
            query = query.where(messages.c.account == account)
        with self.transaction() as c:
            rows = [dict(row._mapping) for row in c.execute(query)]
        for row in rows:
            row["reasons"] = json.loads(row["reasons"])
        return rows

    def resolve(self, message_rows: Sequence[int] | None, now: datetime) -> int:
        """Close held items (all open ones when ``message_rows`` is None); returns how many."""
        condition: Any = messages.c.resolved_at.is_(None)
        if message_rows is not None:
            condition = condition & messages.c.id.in_(list(message_rows))
        with self.transaction() as c:
            return int(c.execute(update(messages).where(condition)
                                 .values(resolved_at=now)).rowcount)

    def polls_between(self, start: datetime, end: datetime,
                      account: str | None = None) -> list[dict[str, Any]]:
        query = select(polls).where(polls.c.started_at >= start, polls.c.started_at < end)
        if account is not None:
            query = query.where(polls.c.account == account)
        with self.transaction() as c:
            return [dict(r._mapping) for r in c.execute(query.order_by(polls.c.id))]

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

    def last_good_poll(self, account: str | None = None) -> datetime | None:
        """When a poll (of ``account``, or of any account) last finished well."""
        condition: Any = polls.c.ok.is_(True)
        if account is not None:
            condition = condition & (polls.c.account == account)
        with self.transaction() as c:
            value: datetime | None = c.execute(
                select(func.max(polls.c.finished_at)).where(condition)
            ).scalar_one_or_none()
            return value

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

    # --- pauses --------------------------------------------------------------------------

    def _pause(self, condition: Any) -> Pause | None:
        with self.transaction() as c:
            row = c.execute(
                select(pauses.c.id, pauses.c.account, pauses.c.reason, pauses.c.started_at,
                       pauses.c.alert_message_id, pauses.c.alert_attempted_at,
                       pauses.c.alert_sent_at)
                .where(condition).order_by(pauses.c.id).limit(1)
            ).first()
        return None if row is None else Pause(**row._mapping)

    def active_pause(self, account: str) -> Pause | None:
        """The pause that stops ``account``'s replies now, if any."""
        return self._pause((pauses.c.account == account) & pauses.c.resumed_at.is_(None))

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
