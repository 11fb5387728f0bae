"""stripe_events.request_id: the webhook request that delivered an event, so the timer that processes
it later (and the events it records) logs under that request's id

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 19:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("stripe_events", sa.Column("request_id", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("stripe_events", schema=None) as batch_op:
        batch_op.drop_column("request_id")
