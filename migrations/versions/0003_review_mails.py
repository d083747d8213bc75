"""Review emails: the Message-ID, the hashed one-time token and the replies each one listed.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

from modbot.store import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "review_mails",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("account", sa.String(320), nullable=False),
        sa.Column("message_id", sa.String(255), nullable=False, unique=True),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("items", sa.Text, nullable=False),
        sa.Column("sent_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sa.Column("used_at", UTCDateTime, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("review_mails")
