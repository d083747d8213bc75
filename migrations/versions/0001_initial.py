"""Initial schema: cursors, messages with decisions, outbox, polls.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

from modbot.store import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cursors",
        sa.Column("account", sa.String(320), primary_key=True),
        sa.Column("folder", sa.String(255), primary_key=True),
        sa.Column("uidvalidity", sa.Integer, primary_key=True),
        sa.Column("last_uid", sa.Integer, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "messages",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("account", sa.String(320), nullable=False),
        sa.Column("message_key", sa.String(64), nullable=False),
        sa.Column("folder", sa.String(255), nullable=False),
        sa.Column("uidvalidity", sa.Integer, nullable=False),
        sa.Column("uid", sa.Integer, nullable=False),
        sa.Column("seen_at", UTCDateTime, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("authentic", sa.Boolean, nullable=True),
        sa.Column("classify_rule", sa.String(64), nullable=False),
        sa.Column("person_name", sa.String(200), nullable=True),
        sa.Column("profile_url", sa.String(500), nullable=True),
        sa.Column("invitation_id", sa.String(64), nullable=True),
        sa.Column("address_source", sa.String(64), nullable=True),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("policy_rule", sa.String(64), nullable=False),
        sa.Column("reasons", sa.Text, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("resolved_at", UTCDateTime, nullable=True),
        sa.UniqueConstraint("account", "message_key", name="uq_messages_account_key"),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("message_row", sa.Integer, sa.ForeignKey("messages.id"), nullable=False),
        sa.Column("message_id", sa.String(255), nullable=False, unique=True),
        sa.Column("template", sa.String(64), nullable=False),
        sa.Column("recipient_name", sa.String(200), nullable=True),
        sa.Column("recipient_email", sa.String(320), nullable=False),
        sa.Column("redirected_to", sa.String(320), nullable=True),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", UTCDateTime, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("sent_at", UTCDateTime, nullable=True),
    )
    op.create_index("ix_outbox_status", "outbox", ["status"])
    op.create_table(
        "polls",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("account", sa.String(320), nullable=False),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("finished_at", UTCDateTime, nullable=True),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("new_messages", sa.Integer, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
    )
    op.create_table(
        "digests",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("account", sa.String(320), nullable=False),
        sa.Column("due_at", UTCDateTime, nullable=False),
        sa.Column("sent_at", UTCDateTime, nullable=False),
        sa.Column("message_id", sa.String(255), nullable=False),
        sa.UniqueConstraint("account", "due_at", name="uq_digests_account_due"),
    )


def downgrade() -> None:
    op.drop_table("digests")
    op.drop_table("polls")
    op.drop_index("ix_outbox_status", "outbox")
    op.drop_table("outbox")
    op.drop_table("messages")
    op.drop_table("cursors")
