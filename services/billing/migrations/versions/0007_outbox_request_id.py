"""outbox.request_id: the request that recorded an event, published with it so logs can follow it

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 10:00:00
"""

from alembic import op

import chassis.events

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    chassis.events.add_request_id_column(op)


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("request_id")
