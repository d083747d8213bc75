"""The source of truth: messages seen, decisions, the outbox, cursors, polls and pauses.

The package is the only place that knows the schema: ``schema`` declares the tables,
``records`` the typed values that go in and come out, ``database`` opens the database and
brings it to head, and the statements live beside the work that needs them (``inbox`` for the
poll, ``reports`` for the digest and the status, ``review`` for what waits for the
counselor). Every other module uses ``Store`` and the records; SQLAlchemy and alembic are
imported nowhere else but the account lock and the migrations.

The store holds only what the work needs: never a message body, never a subject; inbound
Message-IDs are kept as hashes. It must never put row values in logs or exception text.
"""

from __future__ import annotations

from modbot.records import (
    COUNTS_AS_REPLIED,
    DigestFacts,
    Item,
    MessageRecord,
    OutboxItem,
    OutboxStatus,
    Pause,
    PollRecord,
    Replied,
    ReplyRecord,
    ReviewMail,
    Waiting,
    WeekCount,
    message_key,
)
from modbot.store.database import (
    Location,
    current_revision,
    locate,
    migrate,
    migrations_dir,
    quiet_library_loggers,
    upgrade,
)
from modbot.store.inbox import PollStatements
from modbot.store.reports import ReportStatements
from modbot.store.review import ReviewStatements
from modbot.store.schema import HEAD_REVISION, UTCDateTime, metadata

__all__ = [
    "COUNTS_AS_REPLIED",
    "HEAD_REVISION",
    "DigestFacts",
    "Item",
    "Location",
    "MessageRecord",
    "OutboxItem",
    "OutboxStatus",
    "Pause",
    "PollRecord",
    "Replied",
    "ReplyRecord",
    "ReviewMail",
    "Store",
    "UTCDateTime",
    "Waiting",
    "WeekCount",
    "current_revision",
    "locate",
    "message_key",
    "metadata",
    "migrate",
    "migrations_dir",
    "quiet_library_loggers",
    "upgrade",
]


class Store(PollStatements, ReportStatements, ReviewStatements):
    """All reads and writes of modbot's state. Create it with :meth:`open`."""
