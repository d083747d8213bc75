"""Pauses with their one alert, and the retention purge mark on messages.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

from modbot.store import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("purged_at", UTCDateTime, nullable=True))
    op.create_table(
        "pauses",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("account", sa.String(320), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("alert_message_id", sa.String(255), nullable=False),
        sa.Column("alert_attempted_at", UTCDateTime, nullable=True),
        sa.Column("alert_sent_at", UTCDateTime, nullable=True),
        sa.Column("resumed_at", UTCDateTime, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("pauses")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("purged_at")
