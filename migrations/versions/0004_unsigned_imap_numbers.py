"""Hold IMAP UIDs and UIDVALIDITY values up to 4294967295 on every database.

RFC 3501 makes both unsigned 32-bit numbers; a signed INTEGER column overflows at 2**31 on
PostgreSQL (Dovecot's time-based UIDVALIDITY passes it in 2038).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

COLUMNS = (("cursors", "uidvalidity"), ("cursors", "last_uid"),
           ("messages", "uidvalidity"), ("messages", "uid"))


def upgrade() -> None:
    for table, column in COLUMNS:
        with op.batch_alter_table(table) as batch:
            batch.alter_column(column, type_=sa.BigInteger, existing_type=sa.Integer,
                               existing_nullable=False)


def downgrade() -> None:
    for table, column in COLUMNS:
        with op.batch_alter_table(table) as batch:
            batch.alter_column(column, type_=sa.Integer, existing_type=sa.BigInteger,
                               existing_nullable=False)
