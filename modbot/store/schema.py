"""The tables, as SQLAlchemy Core declares them: the one description of the schema in code.

The alembic migrations in ``migrations/`` must build exactly these tables (a test compares
them); a new database is created from them directly. Only the store package reads them: every
other module speaks the typed records of ``modbot.records``.

This module must never create an engine or touch a database when imported.
"""

from __future__ import annotations

from datetime import UTC, datetime
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
)

from modbot.records import OutboxStatus


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


# The newest migration in migrations/versions; tests/edges/test_store.py checks they agree. Knowing
# it lets a start-up with a current schema skip importing alembic (a quarter second).
HEAD_REVISION = "0006"

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
    # The digest's weeks, counted from the index alone: no row is read to count it.
    Index("ix_messages_account_seen_at_counts", "account", "seen_at", "kind", "action",
          "policy_rule"),
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
    Column("status", String(24), nullable=False, index=True),  # an OutboxStatus value
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime, nullable=True),
)

# The outbox columns the store sets itself as a reply moves through its states; every other
# column comes from a ``ReplyRecord`` field of the same name (a test checks they cover it).
OUTBOX_BOOKKEEPING = frozenset({"id", "message_row", "attempts", "next_attempt_at",
                                "last_error", "sent_at"})
# The message columns the store sets itself later; the rest come from a ``MessageRecord``.
MESSAGE_BOOKKEEPING = frozenset({"id", "resolved_at", "purged_at"})

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

# alembic's own bookkeeping table, as alembic creates it.
alembic_version = Table(
    "alembic_version", MetaData(),
    Column("version_num", String(32), nullable=False),
    PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)

# What waits for the counselor (a held item), over messages outer-joined to their reply.
OPEN_ITEM = messages.c.resolved_at.is_(None) & (
    (messages.c.action == "hold") | outbox.c.status.in_(
        (OutboxStatus.REVIEW, OutboxStatus.FAILED, OutboxStatus.UNCERTAIN)))
