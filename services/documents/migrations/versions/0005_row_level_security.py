"""row-level security: emails visible only within the transaction's client (or workspace), webhook
subscriptions and deliveries within the workspace

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 12:00:00.000000
"""

from alembic import op

from chassis.db import disable_row_level_security, enable_row_level_security

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# Delivery (the mail and webhook timers) and event consumers run unscoped and bypass these; a
# portal call (forward, message, statement) is held to its client, an admin call to its workspace.
CLIENT_TABLES = ("emails",)
WORKSPACE_TABLES = ("webhook_subscriptions", "webhook_deliveries")


def upgrade() -> None:
    for table in CLIENT_TABLES:
        enable_row_level_security(op, table)
    for table in WORKSPACE_TABLES:
        enable_row_level_security(op, table, client_column=None)


def downgrade() -> None:
    for table in CLIENT_TABLES + WORKSPACE_TABLES:
        disable_row_level_security(op, table)
