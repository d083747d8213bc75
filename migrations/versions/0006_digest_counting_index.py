"""Widen the messages index by account and arrival to hold what the digest counts.

With kind, action and policy rule in the index, the digest's weekly counts are read from the
index alone instead of looking up every message of the weeks in the table. The index still
serves every query by account and arrival that the narrower one served.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_messages_account_seen_at_counts", "messages",
                    ["account", "seen_at", "kind", "action", "policy_rule"])
    op.drop_index("ix_messages_account_seen_at", "messages")


def downgrade() -> None:
    op.create_index("ix_messages_account_seen_at", "messages", ["account", "seen_at"])
    op.drop_index("ix_messages_account_seen_at_counts", "messages")
