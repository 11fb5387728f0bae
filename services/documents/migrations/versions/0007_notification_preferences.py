"""notification preferences copied from billing: what each contact wants emailed

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 05:00:00

Filled by billing's contact.notification_preferences_changed events; a contact without a row has the
defaults (everything but the monthly statement), so nothing is backfilled. One client's data: held to
its workspace and client by row-level security, like the emails (0005).
"""

import sqlalchemy as sa
from alembic import op

import chassis.db
from chassis.db import disable_row_level_security, enable_row_level_security

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notification_preferences",
        sa.Column("contact_id", sa.String(length=36), nullable=False),
        sa.Column("workspace_id", sa.String(length=36), nullable=False),
        sa.Column("client_id", sa.String(length=36), nullable=False),
        sa.Column("choices", sa.JSON(), nullable=False),
        sa.Column("email_locale", sa.String(length=20), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", chassis.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("contact_id"),
    )
    enable_row_level_security(op, "notification_preferences")


def downgrade() -> None:
    disable_row_level_security(op, "notification_preferences")
    op.drop_table("notification_preferences")
