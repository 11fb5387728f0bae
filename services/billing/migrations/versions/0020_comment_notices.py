"""comments.notice: a dispute step in an invoice's thread as data, for the portal to word in its reader's language

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07 16:20:00

The steps written before keep only their English body.
"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("comments") as batch:
        batch.add_column(sa.Column("notice", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("comments") as batch:
        batch.drop_column("notice")
