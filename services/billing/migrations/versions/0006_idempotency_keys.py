"""idempotency keys: a state-changing RPC called again with the same key returns the first answer

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 13:00:00
"""

from alembic import op

import chassis.idempotency

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    chassis.idempotency.create_table(op)


def downgrade() -> None:
    op.drop_table("idempotency_keys")
