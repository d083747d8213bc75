"""Index messages by account and arrival, for the digest's weekly counts.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_messages_account_seen_at", "messages", ["account", "seen_at"])


def downgrade() -> None:
    op.drop_index("ix_messages_account_seen_at", "messages")
