"""row-level security: client-scoped tables visible only within the transaction's workspace and client

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 12:00:00.000000
"""

from alembic import op

from chassis.db import disable_row_level_security, enable_row_level_security

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

CLIENT_TABLES = ("customers", "payment_methods", "attempts", "card_setups")
WORKSPACE_TABLES = ("disputes",)
# refunds hang off attempts; stripe_events are Stripe's, processed by the service for itself.


def upgrade() -> None:
    for table in CLIENT_TABLES:
        enable_row_level_security(op, table)
    for table in WORKSPACE_TABLES:
        enable_row_level_security(op, table, client_column=None)


def downgrade() -> None:
    for table in (*CLIENT_TABLES, *WORKSPACE_TABLES):
        disable_row_level_security(op, table)
