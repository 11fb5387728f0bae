"""idempotency keys: a state-changing RPC called again with the same key returns the first answer

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 13:00:00
"""

from alembic import op

import chassis.idempotency

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    chassis.idempotency.create_table(op)


def downgrade() -> None:
    op.drop_table("idempotency_keys")
