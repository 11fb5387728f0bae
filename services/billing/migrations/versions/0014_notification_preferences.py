"""notification preferences per contact, the monthly statements announced, and who paid by card

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 05:00:00

A contact without a preferences row has the defaults (everything on but the monthly statement), so
existing contacts need no backfill. All three tables hold one client's data: row-level security as
for the other client tables (0005), held to the workspace and, for a portal call, the client.
"""

import sqlalchemy as sa
from alembic import op

import chassis.db
from chassis.db import disable_row_level_security, enable_row_level_security

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

TABLES = ("notification_preferences", "monthly_statements", "payment_payers")


def upgrade() -> None:
    op.create_table(
        "notification_preferences",
        sa.Column("contact_id", sa.String(length=36), nullable=False),
        sa.Column("workspace_id", sa.String(length=36), nullable=False),
        sa.Column("client_id", sa.String(length=36), nullable=False),
        *(
            sa.Column(name, sa.Boolean(), nullable=False)
            for name in ("invoices", "quotes", "reminders", "receipts", "monthly_statement", "comment_replies")
        ),
        sa.Column("bookings", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", chassis.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["client_id"], ["clients.id"]),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"]),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"]),
        sa.PrimaryKeyConstraint("contact_id"),
    )
    op.create_index("ix_notification_preferences_client_id", "notification_preferences", ["client_id"])
    op.create_index(
        "ix_notification_preferences_statement", "notification_preferences", ["workspace_id", "monthly_statement"]
    )
    op.create_table(
        "monthly_statements",
        sa.Column("contact_id", sa.String(length=36), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("workspace_id", sa.String(length=36), nullable=False),
        sa.Column("client_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", chassis.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["client_id"], ["clients.id"]),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"]),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"]),
        sa.PrimaryKeyConstraint("contact_id", "period"),
    )
    op.create_table(
        "payment_payers",
        sa.Column("payment_id", sa.String(length=36), nullable=False),
        sa.Column("workspace_id", sa.String(length=36), nullable=False),
        sa.Column("client_id", sa.String(length=36), nullable=False),
        sa.Column("contact_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", chassis.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["client_id"], ["clients.id"]),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"]),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"]),
        sa.PrimaryKeyConstraint("payment_id"),
    )
    for table in TABLES:
        enable_row_level_security(op, table)


def downgrade() -> None:
    for table in TABLES:
        disable_row_level_security(op, table)
    op.drop_table("payment_payers")
    op.drop_table("monthly_statements")
    op.drop_index("ix_notification_preferences_statement", table_name="notification_preferences")
    op.drop_index("ix_notification_preferences_client_id", table_name="notification_preferences")
    op.drop_table("notification_preferences")
